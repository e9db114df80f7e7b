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

    func recordInsert(_ address: DeviceAddress, bytes: Int) {
        var state = added[address] ?? QueueState(count: 0, bytes: 0)
        state.count += 1
        state.bytes += bytes
        added[address] = state
    }

    /// Writes the accumulated queue counters to the device rows.
    func flushCounters(_ db: Database) throws {
        let statement = try db.cachedStatement(
            sql: "UPDATE device SET queue_count = queue_count + ?, queue_bytes = queue_bytes + ? WHERE account_id = ? AND device_id = ?")
        for (address, state) in added {
            try statement.execute(arguments: [state.count, state.bytes, address.accountId, Int64(address.deviceId)])
        }
        added.removeAll()
    }
}
