import Foundation
import ParleyClient
import NIOPosix
import ParleyRelay
import ParleyWire

/// Issue 12's benchmark (`parley-bench client-group --first-posts`): a group of 500 one-device members at the
/// relay's DEFAULT limits (only account creation raised: every account is registered from loopback), every
/// member online. Measured to the LAST member's reception of each message:
/// * the creator: from `createGroup` to the first message reaching all 499 others (sessions set up from one
///   batched bundle request, the sender key handed out, one sender-key ciphertext);
/// * a sample of other members' first posts (each sets up its own 499 sessions);
/// * later messages of the creator (steady state): p50 / p99.
///
/// Every member is a real registered account and device with a real prekey bundle. `fullMembers` of them (the
/// creator, the sampled posters, observers) run the whole client: they decrypt, store and send receipts, and
/// their reception is the message decrypted and stored. The others are `GroupArrivalSocket`s: their reception
/// is the envelope at their socket. Running 500 full clients on one 2-core machine would measure 499
/// decryptions, stores and receipts queued on the same two cores, work each member's own device does in
/// parallel in real use (`--full-members 500` still measures that).
struct GroupFirstPostBench {
    let members: Int
    let sample: Int
    let later: Int
    let fullMembers: Int
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

        let step = max(1, (members - 1) / max(sample, 1))
        let posters = Array(stride(from: 1, to: members, by: step).prefix(sample))
        var full = Set([0] + posters)
        var next = members - 1
        while full.count < min(max(fullMembers, full.count), members), next > 0 {
            full.insert(next)
            next -= 1
        }
        print(
            "parley-bench client-group --first-posts: \(members) one-device members (\(full.count) running the client, "
                + "\(members - full.count) receiving at their sockets), relay defaults (creation raised), in-process at \(server)")

        var devices: [ParleyDevice] = []
        for start in stride(from: 0, to: members, by: 16) {
            try await withThrowingTaskGroup(of: (Int, ParleyDevice).self) { group in
                for i in start..<min(start + 16, members) {
                    group.addTask {
                        let name = "m\(i)-\(UUID().uuidString.prefix(6).lowercased())"
                        return (i, try await ParleyDevice.register(
                            name: name, serverURL: server, storePath: dir.appendingPathComponent("\(name).sqlite").path))
                    }
                }
                var batch: [(Int, ParleyDevice)] = []
                for try await entry in group { batch.append(entry) }
                devices += batch.sorted { $0.0 < $1.0 }.map(\.1)
            }
        }
        let names = devices.map(\.account.name)
        let arrivals = GroupArrivals()
        let online = "\u{0}online"
        var consumers: [Task<Void, Never>] = []
        var loops: [Task<Void, Never>] = []
        var running: [Int: ParleyDevice] = [:]
        var lightCredentials: [DeviceCredentials] = []
        for (index, device) in devices.enumerated() {
            guard full.contains(index) else {
                lightCredentials.append(device.account.credentials)
                await device.close()
                continue
            }
            running[index] = device
            let events = await device.events()
            consumers.append(Task {
                for await event in events {
                    switch event {
                    case .message(let message) where !message.outgoing:
                        if let body = message.body { arrivals.record(body, sentAt: message.sentAt) }
                    case .backlogDrained: arrivals.record(online)
                    default: break
                    }
                }
            })
            loops.append(Task { await device.run() })
        }
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var sockets: [GroupArrivalSocket] = []
        for credentials in lightCredentials {
            let loop = eventLoops.next()
            let ready = loop.makePromise(of: Void.self)
            sockets.append(
                try await connectWebSocket(
                    on: loop, host: "127.0.0.1", port: relay.port, authorization: credentials.authorizationHeader,
                    handler: GroupArrivalSocket(arrivals: arrivals, ready: ready), ready: ready
                ).get())
        }
        try await arrivals.wait(for: online, count: running.count, timeout: .seconds(120))

        /// From `began` to the message reaching every member but `sender`: (all members, running members only).
        func reach(_ body: String, from sender: Int, began: ContinuousClock.Instant, timeout: Duration) async throws -> (Double, Double) {
            try await arrivals.wait(for: body, count: running.count - 1, timeout: timeout)
            guard let timestamp = arrivals.sentAt(body) else { throw FirstPostBenchFailure("no sender timestamp for a message") }
            let key = GroupArrivals.key(sender: names[sender], clientTimestamp: timestamp)
            try await arrivals.wait(for: key, count: sockets.count, timeout: timeout)
            let fullLast = arrivals.last(body) ?? .now
            let last = max(fullLast, arrivals.last(key) ?? fullLast)
            return (seconds(last - began), seconds(fullLast - began))
        }

        guard let creator = running[0] else { throw FirstPostBenchFailure("the creator is not running") }
        let start = ContinuousClock.now
        let groupId = try await creator.createGroup(title: "bench", members: Array(names.dropFirst()))
        let text = "first message from the creator"
        _ = try await creator.sendGroup(text, to: groupId)
        let creatorFirst = try await reach(text, from: 0, began: start, timeout: .seconds(600))

        var firstPosts: [(Double, Double)] = []
        for index in posters {
            guard let poster = running[index] else { continue }
            let post = "first post from \(poster.account.name)"
            let began = ContinuousClock.now
            _ = try await poster.sendGroup(post, to: groupId)
            firstPosts.append(try await reach(post, from: index, began: began, timeout: .seconds(600)))
        }

        var steady: [Double] = []
        var steadyFull: [Double] = []
        for n in 0..<later {
            let body = "later message \(n)"
            let began = ContinuousClock.now
            _ = try await creator.sendGroup(body, to: groupId)
            let (all, fullOnly) = try await reach(body, from: 0, began: began, timeout: .seconds(120))
            steady.append(all * 1000)
            steadyFull.append(fullOnly * 1000)
        }

        print(
            String(
                format: "creator: group create -> first message at the last of %d members: %.2f s (at the last running member, decrypted: %.2f s)",
                members - 1, creatorFirst.0, creatorFirst.1))
        let sorted = firstPosts.map(\.0).sorted()
        print(
            String(
                format: "members' first posts (%d sampled) -> last member: median %.2f s, max %.2f s (%@)", sorted.count,
                sorted.isEmpty ? 0 : sorted[sorted.count / 2], sorted.last ?? 0,
                firstPosts.map { String(format: "%.2f/%.2f", $0.0, $0.1) }.joined(separator: ", ")))
        func pct(_ values: [Double], _ p: Double) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        }
        print(
            String(
                format: "later messages (%d) -> last member: p50 %.1f ms, p99 %.1f ms, max %.1f ms; last running member (decrypted): p50 %.1f ms, p99 %.1f ms",
                steady.count, pct(steady, 0.5), pct(steady, 0.99), steady.max() ?? 0, pct(steadyFull, 0.5), pct(steadyFull, 0.99)))

        for socket in sockets { socket.close() }
        for loop in loops { loop.cancel() }
        for loop in loops { await loop.value }
        for device in running.values { await device.close() }
        for consumer in consumers { consumer.cancel() }
        try await relay.stop()
        try await eventLoops.shutdownGracefully()
    }
}

private func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
