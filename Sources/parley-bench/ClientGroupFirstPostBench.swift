import Foundation
import ParleyClient
import ParleyRelay

/// Issue 12's benchmark (`parley-bench client-group --first-posts`): a group of 500 one-device members at the
/// relay's DEFAULT limits (only account creation raised: every account is registered from loopback), every
/// member online (`run`). Measured to the LAST member's reception of each message:
/// * the creator: from `createGroup` to the first message reaching all 499 others (sessions set up from one
///   batched bundle request, the sender key handed out, one sender-key ciphertext);
/// * a sample of other members' first posts (each sets up its own 499 sessions);
/// * later messages of the creator (steady state): p50 / p99.
struct GroupFirstPostBench {
    let members: Int
    let sample: Int
    let later: Int
    let dir: URL

    func run() async throws {
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 1_000_000
        limits.creationsPerSecondPerAddress = 1_000_000
        let relay = try await RelayServer.start(
            RelayConfiguration(
                host: "127.0.0.1", port: 0, databasePath: dir.appendingPathComponent("relay.sqlite").path, limits: limits,
                logLevel: .error))
        let server = "http://127.0.0.1:\(relay.port)"
        print("parley-bench client-group --first-posts: \(members) one-device members, relay defaults (creation raised), in-process at \(server)")

        var devices: [ParleyDevice] = []
        for start in stride(from: 0, to: members, by: 16) {
            try await withThrowingTaskGroup(of: ParleyDevice.self) { group in
                for i in start..<min(start + 16, members) {
                    group.addTask {
                        let name = "m\(i)-\(UUID().uuidString.prefix(6).lowercased())"
                        return try await ParleyDevice.register(
                            name: name, serverURL: server, storePath: dir.appendingPathComponent("\(name).sqlite").path)
                    }
                }
                for try await device in group { devices.append(device) }
            }
        }
        let arrivals = Arrivals()
        var consumers: [Task<Void, Never>] = []
        var loops: [Task<Void, Never>] = []
        for device in devices {
            let events = await device.events()
            consumers.append(Task {
                for await event in events {
                    switch event {
                    case .message(let message) where !message.outgoing: if let body = message.body { arrivals.record(body) }
                    case .backlogDrained: arrivals.record("\u{0}online")
                    default: break
                    }
                }
            })
            loops.append(Task { await device.run() })
        }
        try await arrivals.wait(for: "\u{0}online", count: devices.count, timeout: .seconds(120))

        let creator = devices[0]
        let start = ContinuousClock.now
        let groupId = try await creator.createGroup(title: "bench", members: devices.dropFirst().map(\.account.name))
        let text = "first message from the creator"
        _ = try await creator.sendGroup(text, to: groupId)
        try await arrivals.wait(for: text, count: members - 1, timeout: .seconds(600))
        let creatorFirst = seconds((arrivals.last(text) ?? ContinuousClock.now) - start)

        var firstPosts: [Double] = []
        let step = max(1, (members - 1) / max(sample, 1))
        for index in stride(from: 1, to: members, by: step).prefix(sample) {
            let poster = devices[index]
            let post = "first post from \(poster.account.name)"
            let began = ContinuousClock.now
            _ = try await poster.sendGroup(post, to: groupId)
            try await arrivals.wait(for: post, count: members - 1, timeout: .seconds(600))
            firstPosts.append(seconds((arrivals.last(post) ?? ContinuousClock.now) - began))
        }

        var steady: [Double] = []
        for n in 0..<later {
            let body = "later message \(n)"
            let began = ContinuousClock.now
            _ = try await creator.sendGroup(body, to: groupId)
            try await arrivals.wait(for: body, count: members - 1, timeout: .seconds(120))
            steady.append(seconds((arrivals.last(body) ?? ContinuousClock.now) - began) * 1000)
        }

        print(String(format: "creator: group create -> first message at the last of %d members: %.2f s", members - 1, creatorFirst))
        let sorted = firstPosts.sorted()
        print(
            String(
                format: "members' first posts (%d sampled) -> last member: median %.2f s, max %.2f s (%@)", sorted.count,
                sorted.isEmpty ? 0 : sorted[sorted.count / 2], sorted.last ?? 0,
                firstPosts.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
        let later = steady.sorted()
        func pct(_ p: Double) -> Double { later.isEmpty ? 0 : later[min(later.count - 1, Int(Double(later.count) * p))] }
        print(String(format: "later messages (%d) -> last member: p50 %.1f ms, p99 %.1f ms, max %.1f ms", later.count, pct(0.5), pct(0.99), later.last ?? 0))

        for loop in loops { loop.cancel() }
        for device in devices { await device.close() }
        for consumer in consumers { consumer.cancel() }
        try await relay.stop()
    }
}

/// When each message body arrived at how many devices, and the time of the last arrival.
private final class Arrivals: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var lastAt: [String: ContinuousClock.Instant] = [:]

    func record(_ body: String) {
        lock.withLock {
            counts[body, default: 0] += 1
            lastAt[body] = ContinuousClock.now
        }
    }

    func count(_ body: String) -> Int { lock.withLock { counts[body] ?? 0 } }
    func last(_ body: String) -> ContinuousClock.Instant? { lock.withLock { lastAt[body] } }

    func wait(for body: String, count: Int, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while self.count(body) < count {
            guard ContinuousClock.now < deadline else {
                throw BenchFailure("\"\(body)\" reached \(self.count(body)) of \(count) devices within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

private struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
