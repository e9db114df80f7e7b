import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire

/// Issue 4's benchmark: how long one client takes to send a message to a 500-member group whose
/// members have two devices each, when no session exists yet (bundles fetched, sessions and
/// sender-key distribution first), when sessions exist but the sender key is new (after a
/// removal), and in the steady state (one sender-key ciphertext).
struct ClientGroupSend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client-group",
        abstract: "Time for one client to send to a large group (relay in-process, loopback). Build with -c release.")

    @Option(help: "Group size, sender included.") var members = 500
    @Option(help: "Devices per member (the sender has one).") var devicesPerMember = 2
    @Option(help: "Measured sends per case.") var runs = 5
    @Option(help: "Work folder (a temporary one by default).") var work: String?
    @Flag(help: "Issue 12's case instead: relay at its default limits, one-device members online, time to the last member of the creator's first message (from group create), of sampled members' first posts, and of later messages.")
    var firstPosts = false
    @Option(help: "With --first-posts: members whose first post is timed.") var sample = 5
    @Option(help: "With --first-posts: later messages timed.") var later = 100
    @Option(help: "With --first-posts: members running the whole client (the creator, the sampled posters, observers); the others only receive at their sockets.")
    var fullMembers = 8

    func run() async throws {
        let dir = work.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("parley-bench-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if work == nil { try? FileManager.default.removeItem(at: dir) } }
        if firstPosts {
            try await GroupFirstPostBench(members: members, sample: sample, later: later, fullMembers: fullMembers, dir: dir).run()
            return
        }
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 1_000_000
        limits.creationsPerSecondPerAddress = 1_000_000
        limits.bundleFetchBurst = 1_000_000
        limits.bundleFetchPerSecond = 1_000_000
        limits.requestBurstPerAddress = 1_000_000
        limits.requestsPerSecondPerAddress = 1_000_000
        let relay = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: dir.appendingPathComponent("relay.sqlite").path, limits: limits, logLevel: .error))
        let server = "http://127.0.0.1:\(relay.port)"
        print("parley-bench client-group: \(members) members x \(devicesPerMember) devices, relay in-process at \(server)")

        let setupStart = ContinuousClock.now
        let sender = try await ParleyDevice.register(
            name: "sender-\(UUID().uuidString.prefix(6).lowercased())", serverURL: server, storePath: dir.appendingPathComponent("sender.sqlite").path)
        var names: [String] = []
        var others: [ParleyDevice] = []
        let linker = DeviceLinker(pollInterval: .milliseconds(10))
        for start in stride(from: 1, to: members, by: 16) {
            try await withThrowingTaskGroup(of: [ParleyDevice].self) { group in
                for i in start..<min(start + 16, members) {
                    group.addTask {
                        let name = "m\(i)-\(UUID().uuidString.prefix(6).lowercased())"
                        let first = try await ParleyDevice.register(
                            name: name, serverURL: server, storePath: dir.appendingPathComponent("\(name)-1.sqlite").path)
                        var devices = [first]
                        for n in 2...max(devicesPerMember, 1) where devicesPerMember >= 2 {
                            let link = try await first.startLink(linker: linker)
                            async let joined = ParleyDevice.join(
                                linkString: link.linkString, serverURL: server,
                                storePath: dir.appendingPathComponent("\(name)-\(n).sqlite").path, linker: linker)
                            let claim = try await first.awaitClaim(link, timeout: .seconds(60), linker: linker)
                            try await first.approve(link, claim: claim, linker: linker)
                            devices.append(try await joined.device)
                        }
                        return devices
                    }
                }
                for try await devices in group {
                    names.append(devices[0].account.name)
                    others += devices
                }
            }
        }
        let groupId = try await sender.createGroup(title: "bench", members: names)
        print(String(format: "setup: %d accounts, %d devices, group created in %.1f s", members, others.count + 1, seconds(ContinuousClock.now - setupStart)))

        let text = String(repeating: "x", count: 200)
        let me = sender.account.address
        func forgetEverything() throws {
            // No sessions, no sender key: the next send fetches every bundle.
            try sender.store.transaction { store in
                for name in names {
                    for id in try store.sessionDeviceIds(for: name) { try store.deleteSession(for: ProtocolAddress(name: name, deviceId: id)) }
                }
                try store.rotateOwnSenderKey(groupId: groupId, own: me)
            }
        }

        var cold: [Double] = [], newKey: [Double] = [], steady: [Double] = []
        for _ in 0..<runs {
            try forgetEverything()
            cold.append(try await timeSend(sender, text, groupId))
            try sender.store.rotateOwnSenderKey(groupId: groupId, own: me)
            newKey.append(try await timeSend(sender, text, groupId))
            for _ in 0..<10 { steady.append(try await timeSend(sender, text, groupId)) }
        }
        print(Self.row(["case", "runs", "median ms", "p90 ms", "max ms"]))
        report("no sessions (bundles, X3DH, sender key to \(names.count * devicesPerMember) devices, send)", cold)
        report("sessions exist, new sender key (after a removal)", newKey)
        report("steady state (sender key already distributed)", steady)
        for device in others { await device.close() }
        await sender.close()
        try await relay.stop()
    }

    private func timeSend(_ sender: ParleyDevice, _ text: String, _ groupId: String) async throws -> Double {
        let start = ContinuousClock.now
        _ = try await sender.sendGroup(text, to: groupId)
        let elapsed = seconds(ContinuousClock.now - start)
        guard try sender.store.outboxCount() == 0 else { throw ValidationError("the group message was not sent") }
        return elapsed * 1000
    }

    private func report(_ name: String, _ samples: [Double]) {
        let sorted = samples.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        print(Self.row([name, String(sorted.count), String(format: "%.1f", pct(0.5)), String(format: "%.1f", pct(0.9)), String(format: "%.1f", sorted.last ?? 0)]))
    }

    static func row(_ cells: [String]) -> String {
        cells.enumerated().map { $0.offset == 0 ? $0.element.padding(toLength: 78, withPad: " ", startingAt: 0) : $0.element.padding(toLength: 11, withPad: " ", startingAt: 0) }.joined()
    }
}

private func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
