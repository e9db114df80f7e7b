import Foundation
@testable import ParleyClient
import ParleyProtocol

/// A seeded pseudo-random generator (SplitMix64): the same seed gives the same operations.
struct ChurnRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int.random(in: 0..<items.count, using: &self)] }

    /// An operation name by weight.
    mutating func weighted<T>(_ choices: [(T, Int)]) -> T {
        let total = choices.reduce(0) { $0 + max($1.1, 0) }
        var roll = Int.random(in: 0..<max(total, 1), using: &self)
        for (choice, weight) in choices where weight > 0 {
            if roll < weight { return choice }
            roll -= weight
        }
        return choices[0].0
    }
}

/// The sizes of a randomized run, from the environment so that a longer run needs no rebuild:
/// `PARLEY_CHURN_SEED`, `PARLEY_CHURN_USERS`, `PARLEY_CHURN_OPS`, `PARLEY_CHURN_MINUTES` (a
/// duration instead of a count), `PARLEY_CHURN_LINKED` (second devices), `PARLEY_CHURN_RELAY`
/// (`restart`: in-process stop and start; `kill`: a `parley-relay` process killed with SIGKILL).
struct ChurnConfiguration: Sendable, CustomStringConvertible {
    var seed: UInt64
    var users: Int
    var operations: Int
    var duration: Duration?
    var linkedDevices: Int
    var relayKills: Bool

    static func fromEnvironment(default base: ChurnConfiguration) -> ChurnConfiguration {
        let env = ProcessInfo.processInfo.environment
        var config = base
        if let seed = env["PARLEY_CHURN_SEED"].flatMap(UInt64.init) { config.seed = seed }
        if let users = env["PARLEY_CHURN_USERS"].flatMap(Int.init) { config.users = max(3, users) }
        if let ops = env["PARLEY_CHURN_OPS"].flatMap(Int.init) { config.operations = ops }
        if let minutes = env["PARLEY_CHURN_MINUTES"].flatMap(Double.init) {
            config.duration = .milliseconds(Int64(minutes * 60_000))
            config.operations = Int.max
        }
        if let linked = env["PARLEY_CHURN_LINKED"].flatMap(Int.init) { config.linkedDevices = linked }
        if let relay = env["PARLEY_CHURN_RELAY"] { config.relayKills = relay == "kill" }
        return config
    }

    var description: String {
        "seed \(seed), \(users) users, \(linkedDevices) linked devices, "
            + (duration.map { "\($0)" } ?? "\(operations) operations") + (relayKills ? ", relay killed with SIGKILL" : ", relay restarts")
    }
}

/// What a randomized run did and what it checked.
struct ChurnReport: CustomStringConvertible {
    var operations: [String: Int] = [:]
    var sent = 0
    var accepted = 0
    var refused = 0
    var deliveriesChecked = 0
    var checks = 0
    var violations: [String] = []
    /// Envelopes that did not decrypt on arrival (all repaired by the end, or a violation), by reason.
    var undecryptable: [String: Int] = [:]

    var description: String {
        let ops = operations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "operations: \(operations.values.reduce(0, +)) (\(ops)); messages: \(sent) sent, \(accepted) accepted, "
            + "\(refused) refused; \(undecryptable.values.reduce(0, +)) placeholders on the way "
            + "(\(undecryptable.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))); "
            + "\(deliveriesChecked) device copies and \(checks) invariant checks; "
            + (violations.isEmpty ? "no violation" : "\(violations.count) violations")
    }
}

/// The test's own record of what happened (who sent what, the group versions the relay answered
/// with, when each device joined), and the invariants checked against every device's store once
/// everything has settled:
///
/// * every accepted message is on every device that was a recipient when it was sent (a member
///   of the version it was accepted for; the recipient account's devices, the sender's other
///   devices), exactly once, with its text and its sending device;
/// * no device of an account that was not a recipient has it (a refused message: nobody), except
///   a device linked to the sender's account after the message was queued: the history it
///   imported from the linking device holds that device's own messages as they were, refused
///   ones included (the relay never delivered those to it);
/// * per conversation, what one device sent is shown in the order it was sent;
/// * no placeholder is left, nothing unknown is shown, every outbox is empty.
final class ChurnOracle: @unchecked Sendable {
    enum Target: Equatable {
        case direct(String)
        case group(String)
    }

    struct Sent {
        let uid: String
        let body: String
        let sender: ProtocolAddress
        let target: Target
        /// The logical clock when it was queued (devices linked later may lack it).
        let queuedAt: Int
        /// Group messages: the group's version when it was queued.
        let epochAtQueue: Int64?
    }

    struct GroupState {
        let members: Set<String>
        let admins: Set<String>
    }

    private let lock = NSLock()
    private(set) var clock = 0
    private(set) var sent: [String: Sent] = [:]
    /// group id → version → state, as the relay answered the device that made the change.
    private(set) var versions: [String: [Int64: GroupState]] = [:]
    private(set) var current: [String: Int64] = [:]
    /// Group ids in creation order (ids are random: the order of a run must not depend on them).
    private var created: [String] = []
    /// Every device, with its account and the clock when it joined (0: registered).
    private(set) var devices: [ProtocolAddress: Int] = [:]

    func tick() -> Int {
        lock.withLock {
            clock += 1
            return clock
        }
    }

    func addDevice(_ address: ProtocolAddress, joinedAt: Int) { lock.withLock { devices[address] = joinedAt } }

    func recordGroup(_ groupId: String, epoch: Int64, members: [String], admins: [String]) {
        lock.withLock {
            if versions[groupId] == nil { created.append(groupId) }
            versions[groupId, default: [:]][epoch] = GroupState(members: Set(members), admins: Set(admins))
            if epoch > current[groupId] ?? 0 { current[groupId] = epoch }
        }
    }

    func state(of groupId: String) -> GroupState? {
        lock.withLock { current[groupId].flatMap { versions[groupId]?[$0] } }
    }

    func epoch(of groupId: String) -> Int64? { lock.withLock { current[groupId] } }

    var groupIds: [String] { lock.withLock { created } }

    /// Records a queued message; `epochAtQueue` defaults to the group's version now.
    func recordSent(uid: String, body: String, sender: ProtocolAddress, target: Target, queuedAt: Int, epochAtQueue: Int64?? = nil) {
        lock.withLock {
            var epoch: Int64? = nil
            if case .group(let id) = target { epoch = epochAtQueue ?? current[id] }
            sent[uid] = Sent(uid: uid, body: body, sender: sender, target: target, queuedAt: queuedAt, epochAtQueue: epoch)
        }
    }

    /// Checks every invariant against `stores` (every device's store, by address).
    func check(_ stores: [ProtocolAddress: DeviceStore], report: inout ChurnReport) throws {
        var rowsByDevice: [ProtocolAddress: [StoredMessage]] = [:]
        for (address, store) in stores {
            var rows: [StoredMessage] = []
            for conversation in try store.conversations() {
                var cursor: MessageCursor? = nil
                repeat {
                    let page = try store.messages(in: conversation.id, before: cursor, limit: DeviceStore.maxPageSize)
                    rows += page.messages
                    cursor = page.next
                } while cursor != nil
            }
            rowsByDevice[address] = rows
            report.checks += 1
            if try store.outboxCount() != 0 { report.violations.append("\(address): \(try store.outboxCount()) entries left in the outbox") }
            for row in rows where row.couldNotDecrypt {
                report.violations.append("\(address): unrepaired placeholder from \(row.sender) sent at \(row.sentAt ?? -1)")
            }
            for row in rows where !row.notice && !row.couldNotDecrypt {
                report.checks += 1
                guard let uid = row.messageUid, sent[uid] != nil else {
                    report.violations.append("\(address): a message nobody sent: \(row.body ?? "?")")
                    continue
                }
            }
            // Per conversation and sending device: shown in the order it was sent.
            var bySender: [String: [StoredMessage]] = [:]
            for row in rows where !row.notice && !row.couldNotDecrypt {
                bySender["\(row.conversation.rawValue)/\(row.sender)", default: []].append(row)
            }
            for (key, list) in bySender {
                report.checks += 1
                let shown = list.sorted { ($0.sortAt, $0.id.rawValue) < ($1.sortAt, $1.id.rawValue) }.compactMap(\.sentAt)
                if shown != shown.sorted() || Set(shown).count != shown.count {
                    report.violations.append("\(address): messages of \(key) out of order: \(shown)")
                }
            }
        }

        for message in sent.values.sorted(by: { $0.queuedAt < $1.queuedAt }) {
            report.sent += 1
            guard let senderStore = stores[message.sender],
                let id = try senderStore.message(uid: message.uid, sender: message.sender.name),
                let own = try senderStore.message(id: id)
            else {
                report.violations.append("\(message.uid) (\(message.body)) is not in its sender's history")
                continue
            }
            let failed = own.statuses.values.contains(.failed)
            var expected = Set<String>()
            var allowed = Set<String>()
            if !failed {
                switch message.target {
                case .direct(let peer):
                    expected = [peer, message.sender.name]
                case .group(let groupId):
                    guard let sentAt = own.sentAt, let entry = try senderStore.resendLogEntry(timestamp: sentAt), let epoch = entry.groupEpoch,
                        let members = versions[groupId]?[epoch]?.members
                    else {
                        report.violations.append("\(message.uid) (\(message.body)): no group version recorded for its send")
                        continue
                    }
                    if !members.contains(message.sender.name) {
                        report.violations.append("\(message.uid) (\(message.body)) accepted at version \(epoch) without its sender as member")
                    }
                    if let first = message.epochAtQueue, epoch < first {
                        report.violations.append("\(message.uid) (\(message.body)) accepted at version \(epoch), older than when it was queued (\(first))")
                    }
                    expected = members
                    // A send retried after the relay had accepted it (a kill in between) may have
                    // reached the members of every version from its queueing to its acceptance.
                    for (version, state) in versions[groupId] ?? [:] where version >= (message.epochAtQueue ?? epoch) && version <= epoch {
                        allowed.formUnion(state.members)
                    }
                }
                report.accepted += 1
            } else {
                report.refused += 1
            }
            allowed.formUnion(expected)
            for (address, joinedAt) in devices where address != message.sender {
                let copies = (rowsByDevice[address] ?? []).filter { $0.messageUid == message.uid && $0.sender.name == message.sender.name }
                report.checks += 1
                report.deliveriesChecked += copies.count
                let mustHave = expected.contains(address.name) && joinedAt <= message.queuedAt
                if mustHave && copies.count != 1 {
                    report.violations.append(
                        "\(address) has \(copies.count) copies of \(message.body) from \(message.sender) (\(message.target), must have 1)")
                } else if !allowed.contains(address.name) && !copies.isEmpty
                    && !(address.name == message.sender.name && joinedAt > message.queuedAt)
                {
                    report.violations.append("\(address) has \(message.body) from \(message.sender) (\(message.target)): not a recipient")
                } else if copies.count > 1 {
                    report.violations.append("\(address) has \(copies.count) copies of \(message.body) from \(message.sender)")
                }
                for copy in copies where copy.sender != message.sender || copy.body != message.body {
                    report.violations.append("\(address): \(message.uid) shown as \(copy.body ?? "?") from \(copy.sender), sent by \(message.sender)")
                }
            }
        }
    }
}
