import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket that never reads costs the relay a bounded number of bytes (issue 9, item 4): its outbox is
/// bounded in bytes (envelopes stay in the store and are re-read later), and pongs to its pings are not written
/// while its socket is not writable.
@Suite("A WebSocket that never reads", .timeLimit(.minutes(4)))
struct NonReadingSocketTests {
    /// What one connection may hold at most: its outbox, one store page being written, one frame beyond the
    /// socket's high-water mark, and the high-water mark itself.
    static let perConnectionBound =
        RelayLimits().maxOutboxBytesPerConnection + RelayLimits.deliveryPageBytes + RelayLimits.maxServerFrameBytes
        + 64 * 1024

    static func heldBytes(_ relay: TestRelay, _ device: DeviceCredentials) async throws -> Int {
        let stored = try await relay.running.core.store.deviceAuth(account: device.account, deviceId: device.deviceId)
        guard let stored else { throw TestFailure("no such device") }
        let address = DeviceAddress(accountId: stored.accountId, deviceId: device.deviceId)
        // No session any more: the relay reset it after 30 s unwritable in all (a slow run on a loaded machine
        // gets there); it holds nothing for it then.
        return await relay.running.core.hub.heldBytes(of: address) ?? 0
    }

    @Test func largeMessagesToDevicesThatDoNotReadAreHeldInTheStoreNotInMemory() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        var stalled: [(DeviceCredentials, RawWebSocket)] = []
        for index in 0..<3 {
            let device = try await relay.http.register(Fixtures.uniqueName("bob\(index)"), keys: Fixtures.keys(registrationId: 77))
            let socket = try RawWebSocket(port: relay.port, authorization: device.authorizationHeader)
            try await socket.handshake()
            #expect(try await socket.nextFrame()?.type == .queueEmpty)
            stalled.append((device, socket))
        }
        // 24 ciphertexts of the maximum size to each: 6 MiB per device (8 MiB as base64 frames, more than the
        // sockets hold), none read.
        let content = Fixtures.bytes(RelayLimits.maxCiphertextBytes)
        var peak = 0
        let count = 24
        for _ in 0..<count {
            for (device, _) in stalled {
                let reply = try await relay.http.call(
                    .PUT, "/v1/messages/\(device.account)", alice,
                    body: SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 77, type: 1, content: content)]))
                #expect(reply.status == 200)
                peak = max(peak, try await Self.heldBytes(relay, device))
            }
        }
        for _ in 0..<20 {
            for (device, _) in stalled { peak = max(peak, try await Self.heldBytes(relay, device)) }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(peak <= Self.perConnectionBound, "a non-reading connection held \(peak) bytes")

        // Once a device reads, it gets them all: on its stalled connection, or, if the relay reset that session
        // meanwhile (unwritable for 30 s in all: a slow run on a loaded machine gets there), from its durable queue
        // on a new connection. Each exactly once (an envelope not acked before a reset may come again: counted once).
        let (device, stalledSocket) = stalled[0]
        var reader = stalledSocket
        var received = Set<UUID>()
        var connections = 1
        while received.count < count {
            guard let frame = try await reader.nextFrame(timeout: .seconds(30)) else {
                guard connections < 3 else { break }
                connections += 1
                reader = try RawWebSocket(port: relay.port, authorization: device.authorizationHeader)
                try await reader.handshake()
                continue
            }
            if frame.type == .message, let envelope = frame.envelope {
                received.insert(envelope.id)
                _ = try reader.write(.ack([envelope.id]))
            }
        }
        #expect(received.count == count, "\(received.count) of \(count) read over \(connections) connection(s)")
        try await relay.stop()
    }

    @Test func pingsFromADeviceThatDoesNotReadCostBoundedMemory() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let flooder = try RawWebSocket(port: relay.port, authorization: alice.authorizationHeader)
        try await flooder.handshake()
        #expect(try await flooder.nextFrame()?.type == .queueEmpty)

        // 16 MiB of pings with the largest payload a control frame may carry, as fast as the relay takes them
        // (for at most 40 s), never reading a pong.
        let ping = RawWebSocket.frame(opcode: 0x9, [UInt8](repeating: 0x50, count: 125))
        let batch = Array([[UInt8]](repeating: ping, count: 512).joined())
        var sent = 0
        var offset = 0
        var peak = 0
        var nextProbe = 0
        let deadline = ContinuousClock.now + .seconds(40)
        flood: while sent < 16 * 1024 * 1024, ContinuousClock.now < deadline {
            switch LoopbackIO.write(flooder.fd, Array(batch[offset...])) {
            case .closed:
                break flood
            case .wrote(let count):
                sent += count
                offset = (offset + count) % batch.count
                if sent >= nextProbe || count == 0 {
                    peak = max(peak, (try? await Self.heldBytes(relay, alice)) ?? 0)
                    nextProbe = sent + 1024 * 1024
                }
                if count == 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        peak = max(peak, (try? await Self.heldBytes(relay, alice)) ?? 0)
        #expect(peak <= 512 * 1024, "pongs for \(sent) bytes of pings held \(peak) bytes")
        try await relay.stop()
    }
}
