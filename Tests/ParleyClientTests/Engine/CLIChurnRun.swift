import Foundation
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyTestSupport
import ParleyWire
import Testing

/// The randomized churn run through the real `parley` binary: every operation is a CLI process
/// (`send`, `send --group`, `group create/add/remove/admin/leave`, `sync`, `listen` in the
/// background), some killed with SIGKILL at a random moment, one account linked to a second
/// device with `link start`/`link join`, and the relay stopped and started. Afterwards every home
/// syncs until nothing moves and `ChurnOracle` checks the stores.
final class CLIChurnRun: @unchecked Sendable {
    static let small = ChurnConfiguration(seed: 20_250_602, users: 4, operations: 45, duration: nil, linkedDevices: 1, relayKills: false)

    let config: ChurnConfiguration
    let oracle = ChurnOracle()
    var report = ChurnReport()
    var random: ChurnRandom
    var harness: EngineHarness!
    var relayUp = true
    var downFor = 0
    /// account → its homes (the first registered, the second linked).
    var homes: [String: [String]] = [:]
    var addresses: [String: ProtocolAddress] = [:]
    var names: [String] = []
    var listeners: [String: ChildProcess] = [:]
    var linked = 0
    var counter = 0
    /// Texts queued by processes that may have been killed before saying the message id:
    /// text → (sender home, target, clock, group version).
    var unconfirmed: [String: (home: String, target: ChurnOracle.Target, queuedAt: Int, epoch: Int64?)] = [:]

    init(_ config: ChurnConfiguration) {
        self.config = config
        self.random = ChurnRandom(seed: config.seed)
    }

    func run() async throws -> ChurnReport {
        harness = try await EngineHarness(limits: RelayLimits())
        for index in 0..<config.users {
            let name = "c\(index)\(UUID().uuidString.prefix(6).lowercased())"
            let home = harness.dir.appendingPathComponent("home-\(name)").path
            let (status, output) = try await cli(home, ["register", name, "--server", harness.baseURL])
            guard status == 0 else { throw CLIFailure("register \(name): \(output)") }
            names.append(name)
            homes[name] = [home]
            let address = try await address(of: home)
            addresses[home] = address
            oracle.addDevice(address, joinedAt: 0)
        }
        let started = ContinuousClock.now
        var done = 0
        while done < config.operations {
            if let duration = config.duration, ContinuousClock.now - started > duration { break }
            try await step()
            done += 1
        }
        try await quiesce()
        var stores: [ProtocolAddress: DeviceStore] = [:]
        var opened: [ParleyDevice] = []
        for home in names.flatMap({ homes[$0] ?? [] }) {
            let device = try CLI.openDevice(home: home)
            opened.append(device)
            stores[device.account.address] = device.store
        }
        try recordUnconfirmed(stores)
        try oracle.check(stores, report: &report)
        for device in opened { await device.close() }
        await harness.finish()
        return report
    }

    // MARK: the CLI

    private func cli(_ home: String, _ arguments: [String]) async throws -> (Int32, String) {
        let result = try await ChildProcess.run(CLI.binary, arguments, environment: CLI.environment(home: home), timeout: .seconds(180))
        try await CLI.unlockAfterCreation(arguments, status: result.status, home: home)
        return result
    }

    private func address(of home: String) async throws -> ProtocolAddress {
        let device = try CLI.openDevice(home: home)
        await device.close()
        return device.account.address
    }

    /// The JSON objects a `--json` command printed.
    private func objects(_ output: String) -> [[String: Any]] {
        output.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    private func count(_ operation: String) { report.operations[operation, default: 0] += 1 }

    private var allHomes: [String] { names.flatMap { homes[$0] ?? [] } }

    private func account(of home: String) -> String? { addresses[home]?.name }

    private func text() -> String {
        counter += 1
        return "c\(counter)-\(random.next() % 100_000)"
    }

    // MARK: operations

    private func step() async throws {
        if !relayUp {
            downFor -= 1
            if downFor <= 0 {
                try await harness.startRelay()
                relayUp = true
            }
        }
        let groups = oracle.groupIds
        let operation = random.weighted([
            ("direct", 20), ("group", groups.isEmpty ? 0 : 22), ("killed-send", 8), ("create", groups.count < 2 ? 8 : 1),
            ("add", groups.isEmpty ? 0 : 6), ("remove", groups.isEmpty ? 0 : 6), ("admin", groups.isEmpty ? 0 : 3),
            ("refused", groups.isEmpty ? 0 : 2), ("listen", 6), ("sync", 12), ("link", linked < config.linkedDevices ? 4 : 0),
            ("relay", relayUp ? 2 : 0),
        ])
        count(operation)
        switch operation {
        case "direct", "killed-send":
            try await send(group: false, kill: operation == "killed-send")
        case "group": try await send(group: true, kill: random.chance(0.2))
        case "create": try await createGroup()
        case "add", "remove", "admin": try await change(operation)
        case "refused": try await refusedChange()
        case "listen": try toggleListener()
        case "sync":
            if relayUp, let home = random.pick(allHomes.filter { listeners[$0] == nil }) { _ = try await cli(home, ["sync"]) }
        case "link": try await link()
        case "relay":
            try await harness.stopRelay()
            relayUp = false
            downFor = Int.random(in: 1...3, using: &random)
        default: break
        }
    }

    private func send(group: Bool, kill: Bool) async throws {
        guard let home = random.pick(allHomes), let me = account(of: home) else { return }
        let target: ChurnOracle.Target
        var arguments: [String]
        let body = text()
        if group {
            let memberOf = oracle.groupIds.filter { oracle.state(of: $0)?.members.contains(me) == true }
            guard let groupId = random.pick(memberOf) else { return }
            target = .group(groupId)
            arguments = ["send", "--json", "--group", groupId, body]
        } else {
            guard let peer = random.pick(names.filter { $0 != me }) else { return }
            target = .direct(peer)
            arguments = ["send", "--json", peer, body]
        }
        let queuedAt = oracle.tick()
        var epoch: Int64? = nil
        if case .group(let groupId) = target { epoch = oracle.epoch(of: groupId) }
        unconfirmed[body] = (home, target, queuedAt, epoch)
        if kill {
            let process = try CLI.start(CLI.binary, home: home, arguments)
            try await Task.sleep(for: .milliseconds(Int64.random(in: 0...500, using: &random)))
            process.signal(SIGKILL)
            _ = await process.wait()
            return
        }
        let (_, output) = try await cli(home, arguments)
        if let sent = objects(output).first(where: { $0["event"] as? String == "sent" }), let uid = sent["id"] as? String,
            let address = addresses[home]
        {
            oracle.recordSent(uid: uid, body: body, sender: address, target: target, queuedAt: queuedAt)
            unconfirmed[body] = nil
        }
    }

    private func createGroup() async throws {
        guard relayUp, let home = random.pick(allHomes), let me = account(of: home) else { return }
        let others = names.filter { $0 != me }.shuffled(using: &random)
        let members = Array(others.prefix(Int.random(in: 2...min(5, others.count), using: &random)))
        let (status, output) = try await cli(home, ["group", "create", "--json", "t\(counter)"] + members)
        guard status == 0, let groupId = objects(output).first?["group"] as? String else { return }
        try await recordView(groupId, home: home)
    }

    private func recordView(_ groupId: String, home: String) async throws {
        let device = try CLI.openDevice(home: home)
        let view = try device.store.groupView(groupId: groupId)
        await device.close()
        oracle.recordGroup(groupId, epoch: view.epoch, members: view.members, admins: view.admins)
    }

    private func change(_ operation: String) async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId),
            let admin = random.pick(state.admins.sorted()), let home = random.pick(homes[admin] ?? [])
        else { return }
        let arguments: [String]
        switch operation {
        case "add":
            guard let newcomer = random.pick(names.filter { !state.members.contains($0) }) else { return }
            arguments = ["group", "add", groupId, newcomer]
        case "remove":
            guard let member = random.pick(state.members.sorted().filter { $0 != admin }) else { return }
            arguments = ["group", "remove", groupId, member]
        default:
            guard let member = random.pick(state.members.subtracting(state.admins).sorted()) else { return }
            arguments = ["group", "admin", groupId, member]
        }
        let (status, output) = try await cli(home, arguments)
        // A home that has not synced since it was added does not know the group's id yet.
        if status != 0 && output.contains("no group matches") { return count("unknown-group") }
        report.checks += 1
        if status != 0 { report.violations.append("\(arguments.joined(separator: " ")) by admin \(admin) failed: \(output)") }
        try await recordView(groupId, home: home)
    }

    private func refusedChange() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId),
            let member = random.pick(state.members.subtracting(state.admins).sorted()), let home = random.pick(homes[member] ?? []),
            let victim = random.pick(state.members.sorted().filter { $0 != member })
        else { return }
        let (status, output) = try await cli(home, ["group", "remove", groupId, victim])
        if status != 0 && output.contains("no group matches") { return count("unknown-group") }
        report.checks += 1
        if status == 0 || !output.contains("only a group admin") {
            report.violations.append("\(member), not an admin, removing \(victim): status \(status), \(output)")
        }
    }

    private func toggleListener() throws {
        guard let home = random.pick(allHomes) else { return }
        if let listener = listeners[home] {
            // Sometimes it is stopped for good, sometimes killed mid-work.
            listener.signal(random.chance(0.5) ? SIGKILL : SIGTERM)
            listeners[home] = nil
        } else {
            listeners[home] = try CLI.start(CLI.binary, home: home, ["listen", "--for", "600"])
        }
    }

    private func link() async throws {
        guard relayUp, let account = random.pick(names.filter { (homes[$0]?.count ?? 0) == 1 }), let phone = homes[account]?.first
        else { return }
        let laptop = phone + "-laptop"
        let start = try ChildProcess.spawn(
            CLI.binary, ["link", "start", "--yes", "--json"], environment: CLI.environment(home: phone), captureOutput: true)
        var linkString: String? = nil
        for _ in 0..<600 where linkString == nil {
            linkString = objects(start.output()).first { $0["event"] as? String == "link" }?["link"] as? String
            if linkString == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let linkString else {
            start.signal(SIGKILL)
            throw CLIFailure("link start printed no link: \(start.output())")
        }
        let (status, output) = try await cli(laptop, ["link", "join", linkString, "--server", harness.baseURL])
        _ = await start.wait(timeout: .seconds(60))
        guard status == 0 else { throw CLIFailure("link join: \(output)") }
        homes[account, default: []].append(laptop)
        let address = try await address(of: laptop)
        addresses[laptop] = address
        oracle.addDevice(address, joinedAt: oracle.tick())
        linked += 1
    }

    // MARK: the end

    private func quiesce() async throws {
        for listener in listeners.values {
            listener.signal(SIGTERM)
            _ = await listener.wait(timeout: .seconds(30))
            listener.signal(SIGKILL)
            _ = await listener.wait()
        }
        listeners = [:]
        if !relayUp {
            try await harness.startRelay()
            relayUp = true
        }
        for round in 0..<30 {
            var moved = false
            var pending = 0
            for home in allHomes.shuffled(using: &random) {
                let before = try await processed(home)
                let (status, output) = try await cli(home, ["sync"])
                if status != 0 { report.violations.append("sync of \(home) failed: \(output)") }
                let after = try await processed(home)
                if after.count != before.count { moved = true }
                pending += after.outbox
            }
            if !moved && pending == 0 { return }
            if pending > 0 && round > 3 { try await Task.sleep(for: .seconds(1)) }
        }
        report.violations.append("the homes did not settle")
    }

    private func processed(_ home: String) async throws -> (count: Int, outbox: Int) {
        let device = try CLI.openDevice(home: home)
        let result = (try device.store.processedEnvelopeCount(), try device.store.outboxCount())
        await device.close()
        return result
    }

    /// Messages queued by a process killed before it printed their id: their senders' histories say.
    private func recordUnconfirmed(_ stores: [ProtocolAddress: DeviceStore]) throws {
        for (body, sent) in unconfirmed {
            guard let address = addresses[sent.home], let store = stores[address] else { continue }
            let hits = try store.searchMessages(body, limit: 10).filter { $0.body == body && $0.outgoing && $0.sender == address }
            guard let row = hits.first, let uid = row.messageUid else { continue }
            oracle.recordSent(
                uid: uid, body: body, sender: address, target: sent.target, queuedAt: sent.queuedAt, epochAtQueue: .some(sent.epoch))
        }
    }
}
