import Foundation
import GRDB

/// Per-transaction memo of the lookups a batch of submissions repeats (account ids, device lists, group
/// members, queue counters), so a large batch costs little more than its inserts. Valid only inside the
/// write transaction that created it: nothing else can change these rows meanwhile.
final class SQLiteCommitCache {
    struct QueueState {
        var count: Int
        var bytes: Int
    }

    private var accountIds: [String: Int64?] = [:]
    private var devices: [Int64: [UInt32: UInt32]] = [:]
    private var groupMembers: [UUID: [DeviceAddress]] = [:]
    private var memberships: [UUID: Set<Int64>] = [:]
    /// Queue counters as stored at the start of the transaction.
    private var storedQueues: [DeviceAddress: QueueState] = [:]
    /// What this transaction added, written back once per device at the end.
    private(set) var added: [DeviceAddress: QueueState] = [:]
    /// Per-sender shares of device queues as stored at the start of the transaction, and what it added.
    private var storedShares: [ShareKey: QueueState] = [:]
    private var addedShares: [ShareKey: QueueState] = [:]
    /// Contact pairs (sender, recipient account) this transaction routed a 1:1 message between.
    private(set) var contacts: Set<ContactPair> = []

    /// A sender's share of one device queue.
    struct ShareKey: Hashable {
        let address: DeviceAddress
        let senderId: Int64
    }

    /// Lookups kept across transactions (account ids, device lists).
    private let lookups: SQLiteLookupCache?
    /// Randomness for the transaction's message ids.
    var random = RandomPool()

    init(lookups: SQLiteLookupCache? = nil) {
        self.lookups = lookups
    }

    func accountId(_ db: Database, name: String) throws -> Int64? {
        if let cached = accountIds[name] { return cached }
        if let known = lookups?.accountId(name) { return known }
        let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM account WHERE name = ?"), arguments: [name])
        accountIds[name] = id
        if let id { lookups?.remember(accountId: id, name: name) }
        return id
    }

    func activeDevices(_ db: Database, accountId: Int64) throws -> [UInt32: UInt32] {
        if let cached = devices[accountId] { return cached }
        if let known = lookups?.devices(accountId) { return known }
        let result = try SQLiteRelayStore.activeDevices(db, accountId: accountId)
        devices[accountId] = result
        lookups?.remember(devices: result, accountId: accountId)
        return result
    }

    func isMember(_ db: Database, groupId: UUID, accountId: Int64) throws -> Bool {
        if let members = memberships[groupId] { return members.contains(accountId) }
        let ids = try Int64.fetchAll(
            db.cachedStatement(sql: "SELECT account_id FROM group_member WHERE group_id = ?"), arguments: [groupId])
        memberships[groupId] = Set(ids)
        return ids.contains(accountId)
    }

    func memberDevices(_ db: Database, groupId: UUID) throws -> [DeviceAddress] {
        if let cached = groupMembers[groupId] { return cached }
        let result = try SQLiteRelayStore.memberDevices(db, groupId: groupId)
        groupMembers[groupId] = result
        return result
    }

    /// Current queue state of a device including this transaction's additions; nil for an unknown device.
    func queueState(_ db: Database, _ address: DeviceAddress) throws -> QueueState? {
        let stored: QueueState
        if let cached = storedQueues[address] {
            stored = cached
        } else {
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT queue_count, queue_bytes FROM device WHERE account_id = ? AND device_id = ?"),
                    arguments: [address.accountId, Int64(address.deviceId)])
            else { return nil }
            stored = QueueState(count: row["queue_count"], bytes: row["queue_bytes"])
            storedQueues[address] = stored
        }
        let extra = added[address] ?? QueueState(count: 0, bytes: 0)
        return QueueState(count: stored.count + extra.count, bytes: stored.bytes + extra.bytes)
    }

    func recordInsert(_ address: DeviceAddress, bytes: Int, senderId: Int64) {
        var state = added[address] ?? QueueState(count: 0, bytes: 0)
        state.count += 1
        state.bytes += bytes
        added[address] = state
        // An account's copies to its own devices are not anyone's share.
        guard senderId != address.accountId else { return }
        let key = ShareKey(address: address, senderId: senderId)
        var share = addedShares[key] ?? QueueState(count: 0, bytes: 0)
        share.count += 1
        share.bytes += bytes
        addedShares[key] = share
    }

    /// The part of a device queue that entries of `senderId` take, including this transaction's additions.
    func shareState(_ db: Database, _ address: DeviceAddress, senderId: Int64) throws -> QueueState {
        let key = ShareKey(address: address, senderId: senderId)
        let stored: QueueState
        if let cached = storedShares[key] {
            stored = cached
        } else {
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT count, bytes FROM queue_share WHERE account_id = ? AND device_id = ? AND sender_id = ?"),
                arguments: [address.accountId, Int64(address.deviceId), senderId])
            stored = row.map { QueueState(count: $0["count"], bytes: $0["bytes"]) } ?? QueueState(count: 0, bytes: 0)
            storedShares[key] = stored
        }
        let extra = addedShares[key] ?? QueueState(count: 0, bytes: 0)
        return QueueState(count: stored.count + extra.count, bytes: stored.bytes + extra.bytes)
    }

    func recordContact(_ pair: ContactPair) {
        contacts.insert(pair)
    }

    /// Writes the accumulated queue counters to the device rows and the per-sender shares, and records the
    /// contact pairs that `known` does not hold yet.
    func flushCounters(_ db: Database, known: KnownContacts? = nil) throws {
        let statement = try db.cachedStatement(
            sql: "UPDATE device SET queue_count = queue_count + ?, queue_bytes = queue_bytes + ? WHERE account_id = ? AND device_id = ?")
        for (address, state) in added {
            try statement.execute(arguments: [state.count, state.bytes, address.accountId, Int64(address.deviceId)])
        }
        added.removeAll()
        if !addedShares.isEmpty {
            let share = try db.cachedStatement(
                sql: """
                    INSERT INTO queue_share (account_id, device_id, sender_id, count, bytes) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (account_id, device_id, sender_id)
                    DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes
                    """)
            for (key, state) in addedShares {
                try share.execute(
                    arguments: [key.address.accountId, Int64(key.address.deviceId), key.senderId, state.count, state.bytes])
            }
            addedShares.removeAll()
            storedShares.removeAll()
        }
        let fresh = contacts.filter { known?.contains($0) != true }
        if !fresh.isEmpty {
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO contact (account_id, peer_id) VALUES (?, ?)")
            for pair in fresh {
                try insert.execute(arguments: [pair.from, pair.to])
            }
        }
    }
}
