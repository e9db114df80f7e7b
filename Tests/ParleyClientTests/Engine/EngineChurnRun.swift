import Foundation
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyTestSupport
import ParleyWire
import Testing

/// A seeded randomized run of the engine over a real relay at its default limits: 1:1 and group
/// sends (some in concurrent bursts), groups of 3–6 created, members added, removed, re-added and
/// made admins (and non-admins refused), members leaving, devices going offline and coming back
/// (online ones run the engine's connection loop), second devices linked, and the relay stopped
/// and started (or, with `relayKills`, a `parley-relay` process killed with SIGKILL). Then every
/// device syncs until nothing moves, and `ChurnOracle` checks every invariant.
final class EngineChurnRun: @unchecked Sendable {
    struct Device {
        let device: ParleyDevice
        var loop: Task<Void, Never>?
    }

    let config: ChurnConfiguration
    let oracle = ChurnOracle()
    var report = ChurnReport()
    var random: ChurnRandom
    var harness: EngineHarness!
    var relayProcess: ChildProcess?
    var relayUp = true
    var downFor = 0
    /// account → its devices (the first is the registered one).
    var accounts: [String: [Device]] = [:]
    var names: [String] = []
    var linked = 0
    var counter = 0
    /// Every device's undecryptable events ("own"/"other" sender, reason), collected while it runs.
    var watchers: [Task<Void, Never>] = []
    let failures = FailureTally()

    /// Counts `.undecryptable` events across devices.
    final class FailureTally: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [String: Int] = [:]
        func add(_ key: String) { lock.withLock { counts[key, default: 0] += 1 } }
        var all: [String: Int] { lock.withLock { counts } }
    }

    private func watch(_ device: ParleyDevice) async {
        let events = await device.events()
        let tally = failures
        let me = device.account.name
        watchers.append(Task {
            for await event in events {
                if case .undecryptable(let sender, let reason) = event {
                    tally.add("\(sender.name == me ? "own device" : "other account") \(reason)")
                    if ProcessInfo.processInfo.environment["PARLEY_CHURN_DEBUG"] != nil {
                        print("undecryptable at \(me): from \(sender) \(reason)")
                    }
                }
            }
        })
    }

    static let backoff: ParleyDevice.Backoff = {
        var backoff = ParleyDevice.Backoff()
        backoff.base = .milliseconds(50)
        backoff.cap = .seconds(1)
        return backoff
    }()

    init(_ config: ChurnConfiguration) {
        self.config = config
        self.random = ChurnRandom(seed: config.seed)
    }

    func run() async throws -> ChurnReport {
        harness = try await EngineHarness(limits: RelayLimits())
        if config.relayKills { try await startRelayProcess(fresh: true) }
        defer { relayProcess?.signal(SIGKILL) }
        for index in 0..<config.users {
            let device = try await harness.register("u\(index)")
            names.append(device.account.name)
            accounts[device.account.name] = [Device(device: device)]
            oracle.addDevice(device.account.address, joinedAt: 0)
            await watch(device)
        }
        let started = ContinuousClock.now
        var done = 0
        while done < config.operations {
            if let duration = config.duration, ContinuousClock.now - started > duration { break }
            do {
                try await step()
            } catch {
                if let process = relayProcess {
                    // The reaper may record an exit a moment after the failed request saw it.
                    let exit = await process.wait(timeout: .seconds(2))
                    let health: String
                    do {
                        _ = try await RelayClient(baseURL: harness.baseURL).health()
                        health = "answers /healthz now"
                    } catch {
                        health = "does not answer /healthz now (\(error))"
                    }
                    throw CLIFailure(
                        "\(error); the relay process \(process.pid) \(exit.map { "had exited (\($0))" } ?? "is running") and \(health). "
                            + "Its output: \(process.output().suffix(3_000))")
                }
                throw error
            }
            done += 1
        }
        try await quiesce()
        var stores: [ProtocolAddress: DeviceStore] = [:]
        for devices in accounts.values { for entry in devices { stores[entry.device.account.address] = entry.device.store } }
        try oracle.check(stores, report: &report)
        report.undecryptable = failures.all
        for devices in accounts.values { for entry in devices { await entry.device.close() } }
        for watcher in watchers { watcher.cancel() }
        relayProcess?.signal(SIGKILL)
        _ = await relayProcess?.wait()
        relayProcess = nil
        await harness.finish()
        return report
    }

    private func count(_ operation: String) { report.operations[operation, default: 0] += 1 }

    private var allDevices: [ParleyDevice] { names.flatMap { accounts[$0] ?? [] }.map(\.device) }

    private func devices(of account: String) -> [ParleyDevice] { (accounts[account] ?? []).map(\.device) }

    private func text() -> String {
        counter += 1
        return "m\(counter)-\(random.next() % 100_000)"
    }

    // MARK: operations

    private func step() async throws {
        if !relayUp {
            downFor -= 1
            if downFor <= 0 { try await bringRelayUp() }
        }
        let groups = oracle.groupIds
        let operation = random.weighted([
            ("direct", 22), ("group", groups.isEmpty ? 0 : 24), ("burst", 7), ("create", groups.count < max(2, config.users / 2) ? 6 : 1),
            ("add", groups.isEmpty ? 0 : 6), ("remove", groups.isEmpty ? 0 : 6), ("leave", groups.isEmpty ? 0 : 2),
            ("admin", groups.isEmpty ? 0 : 3), ("refused", groups.isEmpty ? 0 : 2), ("online", 6), ("sync", 10),
            ("link", linked < config.linkedDevices ? 2 : 0), ("relay", relayUp ? 2 : 0),
        ])
        count(operation)
        do {
            try await perform(operation)
        } catch {
            throw CLIFailure("operation \(report.operations.values.reduce(0, +)) (\(operation), relay \(relayUp ? "up" : "down")) failed: \(error)")
        }
    }

    private func perform(_ operation: String) async throws {
        switch operation {
        case "direct": try await sendDirect()
        case "group": try await sendGroup()
        case "burst": try await burst()
        case "create": try await createGroup()
        case "add": try await addMember()
        case "remove": try await removeMember()
        case "leave": try await leave()
        case "admin": try await makeAdmin()
        case "refused": try await refusedChange()
        case "online": await toggleOnline()
        case "sync": await syncSomeone()
        case "link": try await linkDevice()
        case "relay": try await takeRelayDown()
        default: break
        }
    }

    private func anyDevice() -> ParleyDevice? { random.pick(allDevices) }

    private func sendDirect() async throws {
        guard let device = anyDevice(), let peer = random.pick(names.filter { $0 != device.account.name }) else { return }
        let body = text()
        let queuedAt = oracle.tick()
        let uid = try await device.send(body, to: peer)
        oracle.recordSent(uid: uid, body: body, sender: device.account.address, target: .direct(peer), queuedAt: queuedAt)
    }

    private func sendGroup() async throws {
        guard let (device, groupId) = try groupSender() else { return }
        try await sendGroup(from: device, to: groupId)
    }

    /// A device whose own view says it is a member of some group.
    private func groupSender() throws -> (ParleyDevice, String)? {
        var candidates: [(ParleyDevice, String)] = []
        for groupId in oracle.groupIds {
            for device in allDevices where try device.store.groupMembers(groupId: groupId).contains(device.account.name) {
                candidates.append((device, groupId))
            }
        }
        return random.pick(candidates)
    }

    private func sendGroup(from device: ParleyDevice, to groupId: String) async throws {
        let body = text()
        let queuedAt = oracle.tick()
        do {
            let uid = try await device.sendGroup(body, to: groupId)
            oracle.recordSent(uid: uid, body: body, sender: device.account.address, target: .group(groupId), queuedAt: queuedAt)
        } catch ClientError.notAGroupMember {
            count("group-not-member")
        }
    }

    /// Several devices send at once (1:1 and group).
    private func burst() async throws {
        var plans: [(ParleyDevice, ChurnOracle.Target, String)] = []
        for _ in 0..<Int.random(in: 3...6, using: &random) {
            if random.chance(0.5), let (device, groupId) = try groupSender() {
                plans.append((device, .group(groupId), text()))
            } else if let device = anyDevice(), let peer = random.pick(names.filter { $0 != device.account.name }) {
                plans.append((device, .direct(peer), text()))
            }
        }
        let queuedAt = oracle.tick()
        let oracle = self.oracle
        await withTaskGroup(of: Void.self) { group in
            for (device, target, body) in plans {
                group.addTask {
                    switch target {
                    case .direct(let peer):
                        if let uid = try? await device.send(body, to: peer) {
                            oracle.recordSent(uid: uid, body: body, sender: device.account.address, target: target, queuedAt: queuedAt)
                        }
                    case .group(let groupId):
                        if let uid = try? await device.sendGroup(body, to: groupId) {
                            oracle.recordSent(uid: uid, body: body, sender: device.account.address, target: target, queuedAt: queuedAt)
                        }
                    }
                }
            }
        }
    }

    private func createGroup() async throws {
        guard relayUp, let creator = anyDevice() else { return }
        let others = names.filter { $0 != creator.account.name }.shuffled(using: &random)
        let members = Array(others.prefix(Int.random(in: 2...min(5, others.count), using: &random)))
        let groupId = try await creator.createGroup(title: "g\(oracle.groupIds.count)", members: members)
        try recordView(of: groupId, on: creator)
    }

    /// The state the relay answered the device that made a change with.
    private func recordView(of groupId: String, on device: ParleyDevice) throws {
        let view = try device.store.groupView(groupId: groupId)
        oracle.recordGroup(groupId, epoch: view.epoch, members: view.members, admins: view.admins)
    }

    /// A device of an admin of a group, as the relay has it.
    private func adminDevice(_ groupId: String) -> ParleyDevice? {
        guard let state = oracle.state(of: groupId) else { return nil }
        return random.pick(state.admins.sorted().flatMap { devices(of: $0) })
    }

    private func addMember() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId),
            let admin = adminDevice(groupId), let newcomer = random.pick(names.filter { !state.members.contains($0) })
        else { return }
        try await admin.addMembers([newcomer], to: groupId)
        try recordView(of: groupId, on: admin)
    }

    private func removeMember() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId), let admin = adminDevice(groupId),
            let member = random.pick(state.members.sorted().filter { $0 != admin.account.name })
        else { return }
        try await admin.removeMembers([member], from: groupId)
        try recordView(of: groupId, on: admin)
    }

    private func leave() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId), state.members.count > 2,
            let member = random.pick(state.members.sorted()), let device = random.pick(devices(of: member))
        else { return }
        try await device.leaveGroup(groupId)
        try recordView(of: groupId, on: device)
    }

    private func makeAdmin() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId), let admin = adminDevice(groupId),
            let member = random.pick(state.members.subtracting(state.admins).sorted())
        else { return }
        try await admin.makeAdmins([member], in: groupId)
        try recordView(of: groupId, on: admin)
    }

    /// A member who is not an admin tries to remove someone: the relay refuses, nothing changes.
    private func refusedChange() async throws {
        guard relayUp, let groupId = random.pick(oracle.groupIds), let state = oracle.state(of: groupId),
            let member = random.pick(state.members.subtracting(state.admins).sorted()), let device = random.pick(devices(of: member)),
            let victim = random.pick(state.members.sorted().filter { $0 != member })
        else { return }
        report.checks += 1
        do {
            try await device.removeMembers([victim], from: groupId)
            report.violations.append("\(member), not an admin of \(groupId), removed \(victim)")
        } catch RelayClientError.rejected(403, .notAdmin?, _) {
        }
    }

    private func toggleOnline() async {
        guard let account = random.pick(names), var entries = accounts[account], !entries.isEmpty else { return }
        let index = Int.random(in: 0..<entries.count, using: &random)
        if let loop = entries[index].loop {
            loop.cancel()
            await loop.value
            entries[index].loop = nil
        } else {
            let device = entries[index].device
            entries[index].loop = Task { await device.run(backoff: Self.backoff) }
        }
        accounts[account] = entries
    }

    /// An offline device connects once and processes its backlog.
    private func syncSomeone() async {
        let offline = names.flatMap { accounts[$0] ?? [] }.filter { $0.loop == nil }.map(\.device)
        guard relayUp, let device = random.pick(offline) else { return }
        _ = await device.syncOnce(timeout: .seconds(60))
    }

    private func linkDevice() async throws {
        guard relayUp, let account = random.pick(names.filter { (accounts[$0]?.count ?? 0) == 1 }),
            let phone = accounts[account]?.first?.device
        else { return }
        let laptop = try await GroupTestSupport.link(phone, harness: harness, name: "laptop")
        accounts[account, default: []].append(Device(device: laptop))
        await watch(laptop)
        oracle.addDevice(laptop.account.address, joinedAt: oracle.tick())
        linked += 1
    }

    // MARK: the relay

    private func takeRelayDown() async throws {
        if let process = relayProcess {
            process.signal(SIGKILL)
            _ = await process.wait()
            relayProcess = nil
        } else {
            try await harness.stopRelay()
        }
        relayUp = false
        downFor = Int.random(in: 1...4, using: &random)
    }

    private func bringRelayUp() async throws {
        if config.relayKills {
            try await startRelayProcess(fresh: false)
        } else {
            try await harness.startRelay()
        }
        relayUp = true
    }

    /// Runs `parley-relay` as a child process on the harness's port and database, at its default
    /// limits, so that it can be killed with SIGKILL.
    private func startRelayProcess(fresh: Bool) async throws {
        if fresh { try await harness.stopRelay() }
        let binary = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().appendingPathComponent("parley-relay").path
        let process = try ChildProcess.spawn(
            binary, ["--port", String(harness.port), "--database", harness.databasePath, "--log-level", "error"],
            environment: ProcessInfo.processInfo.environment, captureOutput: true)
        relayProcess = process
        // Wait until it answers, and check that the answer is this process's: the port is fixed for the whole run
        // (the devices' stores name it), and on a shared machine another program may have taken it while the relay
        // was down, in which case this relay exits at once and the run would go on talking to the other program.
        let relay = RelayClient(baseURL: harness.baseURL)
        for _ in 0..<200 {
            if (try? await relay.health()) != nil {
                if let exit = await process.wait(timeout: .milliseconds(300)) {
                    throw CLIFailure("parley-relay exited (\(exit)) right after starting on port \(harness.port), which answered anyway: "
                        + "another program holds the port. Its output: \(process.output().suffix(2_000))")
                }
                return
            }
            if let exit = process.termination {
                throw CLIFailure("parley-relay exited (\(exit)) on port \(harness.port): \(process.output().suffix(2_000))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CLIFailure("parley-relay did not start on port \(harness.port)")
    }

    // MARK: the end

    /// Stops every connection loop, brings the relay up, and syncs every device in turn until a
    /// whole round moves nothing.
    private func quiesce() async throws {
        for account in names {
            guard var entries = accounts[account] else { continue }
            for index in entries.indices {
                if let loop = entries[index].loop {
                    loop.cancel()
                    await loop.value
                    entries[index].loop = nil
                }
            }
            accounts[account] = entries
        }
        if !relayUp { try await bringRelayUp() }
        var devices = allDevices
        for round in 0..<40 {
            devices.shuffle(using: &random)
            var moved = false
            for device in devices {
                let before = try device.store.processedEnvelopeCount()
                _ = await device.syncOnce(timeout: .seconds(60))
                if try device.store.processedEnvelopeCount() != before { moved = true }
            }
            var pending = 0
            for device in devices { pending += try device.store.outboxCount() }
            if !moved && pending == 0 { return }
            // Rate-limited sends (429) wait for the bucket to refill.
            if pending > 0 && round > 3 { try await Task.sleep(for: .seconds(1)) }
        }
        report.violations.append("the devices did not settle")
    }
}
