import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// Durable write throughput through the write batcher (store path only, no HTTP).
/// Opt-in: `PARLEY_RELAY_BENCH=1 swift test --filter ThroughputBenchmark` (use `-c release` for real numbers).
@Suite("Throughput benchmark", .enabled(if: ProcessInfo.processInfo.environment["PARLEY_RELAY_BENCH"] == "1"))
struct ThroughputBenchmark {
    @Test func durableMessagesPerSecond() async throws {
        var relayLimits = RelayLimits()
        relayLimits.creationBurstPerAddress = 10_000
        let relay = try await TestRelay.start(limits: relayLimits)
        let http = relay.http
        var senders: [DeviceCredentials] = []
        for index in 0..<(Int(ProcessInfo.processInfo.environment["PARLEY_RELAY_BENCH_SENDERS"] ?? "20") ?? 20) { senders.append(try await http.register(Fixtures.uniqueName("s\(index)"))) }
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 5))
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 1_000_000
        let core = relay.running.core
        let store = core.store
        var authenticated: [AuthenticatedDevice] = []
        for sender in senders {
            guard let auth = try await store.deviceAuth(account: sender.account, deviceId: 1) else { return }
            authenticated.append(AuthenticatedDevice(accountId: auth.accountId, account: auth.account, deviceId: 1))
        }
        let workers = authenticated
        let batcher = MessageWriteBatcher(store: store, limits: limits) { _ in }
        let total = 20_000
        let content = Fixtures.bytes(200)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sender in workers {
                group.addTask {
                    for _ in 0..<(total / workers.count) {
                        let now = RelayClock.nowMillis()
                        _ = try await batcher.submit(
                            MessageSubmission(
                                sender: sender,
                                payload: .direct(
                                    recipient: bob.account,
                                    messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 5, type: 1, content: content)],
                                    own: []),
                                clientTimestamp: nil, serverTimestamp: now, expiresAt: now + 86_400_000))
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("durable messages/s (\(workers.count) concurrent senders, batcher + SQLite): \(Int(Double(total) / seconds))")
        #expect(try await store.totalQueued() == total)
        try await relay.stop()
    }
}
