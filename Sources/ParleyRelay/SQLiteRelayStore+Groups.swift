import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    static func isMember(_ db: Database, groupId: UUID, accountId: Int64) throws -> Bool {
        try Bool.fetchOne(
            db, sql: "SELECT 1 FROM group_member WHERE group_id = ? AND account_id = ?", arguments: [groupId, accountId])
            ?? false
    }

    /// Every active device of every member.
    static func memberDevices(_ db: Database, groupId: UUID) throws -> [DeviceAddress] {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT d.account_id, d.device_id FROM group_member g
                JOIN device d ON d.account_id = g.account_id AND d.state = 'active'
                WHERE g.group_id = ? ORDER BY d.account_id, d.device_id
                """,
            arguments: [groupId])
        return rows.map { row in
            let deviceId: Int64 = row["device_id"]
            return DeviceAddress(accountId: row["account_id"], deviceId: UInt32(truncatingIfNeeded: deviceId))
        }
    }

    static func devicesOf(_ db: Database, accountIds: [Int64]) throws -> [DeviceAddress] {
        var result: [DeviceAddress] = []
        for accountId in accountIds {
            for deviceId in try activeDevices(db, accountId: accountId).keys.sorted() {
                result.append(DeviceAddress(accountId: accountId, deviceId: deviceId))
            }
        }
        return result
    }

    static func groupInfo(_ db: Database, _ groupId: UUID) throws -> GroupInfo {
        guard let row = try Row.fetchOne(db, sql: "SELECT creator, created_at FROM chat_group WHERE id = ?", arguments: [groupId])
        else { throw RelayError.notFound("unknown group") }
        let members = try String.fetchAll(
            db,
            sql: "SELECT a.name FROM group_member g JOIN account a ON a.id = g.account_id WHERE g.group_id = ? ORDER BY a.name",
            arguments: [groupId])
        return GroupInfo(groupId: groupId, creator: row["creator"], members: members, createdAt: row["created_at"])
    }

    /// Resolves account names to ids; throws `.notFound` naming the first unknown account.
    static func resolve(_ db: Database, _ names: [String]) throws -> [Int64] {
        var ids: [Int64] = []
        for name in Set(names).sorted() {
            guard let id = try accountId(db, name: name) else { throw RelayError.notFound("unknown account \(name)") }
            ids.append(id)
        }
        return ids
    }

    /// Queues a relay-generated membership event to `targets`. Events take queue room like messages, from the
    /// actor's share: a target without room refuses the whole change (`queueFull`, thrown before anything is
    /// stored, so the transaction stores nothing).
    static func insertGroupEvent(
        _ db: Database, event: GroupEvent, actor: AuthenticatedDevice, targets: [DeviceAddress], now: Int64,
        expiresAt: Int64, limits: RelayLimits
    ) throws {
        let content = try WireCoding.encoder().encode(event)
        let cache = SQLiteCommitCache()
        try checkRoom(db, [(targets, content.count)], senderId: actor.accountId, limits: limits, cache: cache)
        try insertMessage(
            db, id: MessageID.make(unixMillis: now), kind: .groupEvent, senderId: actor.accountId,
            senderAccount: actor.account, senderDevice: actor.deviceId, conversation: Envelope.groupConversation(event.groupId),
            groupId: event.groupId, type: 0, content: content, serverTimestamp: now, clientTimestamp: nil, targets: targets,
            expiresAt: expiresAt, cache: cache)
        try cache.flushCounters(db)
    }

    func createGroup(creator: AuthenticatedDevice, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits)
        async throws -> (GroupInfo, AffectedQueues)
    {
        let maxMembers = limits.maxGroupMembers
        return try await writeChangingLookups { db in
            var ids = try Self.resolve(db, members)
            if !ids.contains(creator.accountId) { ids.append(creator.accountId) }
            guard ids.count <= maxMembers else { throw RelayError.groupFull }
            let groupId = UUID()
            try db.execute(
                sql: "INSERT INTO chat_group (id, creator, created_at) VALUES (?, ?, ?)",
                arguments: [groupId, creator.account, now])
            for id in ids {
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account_id, added_at) VALUES (?, ?, ?)",
                    arguments: [groupId, id, now])
            }
            let info = try Self.groupInfo(db, groupId)
            let targets = try Self.memberDevices(db, groupId: groupId)
            try Self.insertGroupEvent(
                db, event: GroupEvent(groupId: groupId, action: .created, actor: creator.account, members: info.members),
                actor: creator, targets: targets, now: now, expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func addGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        let maxMembers = limits.maxGroupMembers
        return try await writeChangingLookups { db in
            _ = try Self.groupInfo(db, groupId)
            guard try Self.isMember(db, groupId: groupId, accountId: actor.accountId) else {
                throw RelayError.forbidden("not a member of this group")
            }
            let ids = try Self.resolve(db, members)
            var added: [String] = []
            for (id, name) in zip(ids, Set(members).sorted()) where try !Self.isMember(db, groupId: groupId, accountId: id) {
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account_id, added_at) VALUES (?, ?, ?)",
                    arguments: [groupId, id, now])
                added.append(name)
            }
            let info = try Self.groupInfo(db, groupId)
            guard info.members.count <= maxMembers else { throw RelayError.groupFull }
            let targets = try Self.memberDevices(db, groupId: groupId)
            if !added.isEmpty {
                try Self.insertGroupEvent(
                    db, event: GroupEvent(groupId: groupId, action: .membersAdded, actor: actor.account, members: added),
                    actor: actor, targets: targets, now: now, expiresAt: expiresAt, limits: limits)
            }
            return (info, AffectedQueues(devices: added.isEmpty ? [] : targets))
        }
    }

    func removeGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await writeChangingLookups { db in
            _ = try Self.groupInfo(db, groupId)
            guard try Self.isMember(db, groupId: groupId, accountId: actor.accountId) else {
                throw RelayError.forbidden("not a member of this group")
            }
            let before = try Self.memberDevices(db, groupId: groupId)
            let ids = try Self.resolve(db, members)
            var removed: [String] = []
            for (id, name) in zip(ids, Set(members).sorted()) where try Self.isMember(db, groupId: groupId, accountId: id) {
                try db.execute(
                    sql: "DELETE FROM group_member WHERE group_id = ? AND account_id = ?", arguments: [groupId, id])
                removed.append(name)
            }
            let info = try Self.groupInfo(db, groupId)
            if !removed.isEmpty {
                // Removed members learn about it too.
                try Self.insertGroupEvent(
                    db,
                    event: GroupEvent(groupId: groupId, action: .membersRemoved, actor: actor.account, members: removed),
                    actor: actor, targets: before, now: now, expiresAt: expiresAt, limits: limits)
            }
            return (info, AffectedQueues(devices: removed.isEmpty ? [] : before))
        }
    }

    func group(_ groupId: UUID, viewer: Int64) async throws -> GroupInfo {
        try await pool.read { db in
            let info = try Self.groupInfo(db, groupId)
            guard try Self.isMember(db, groupId: groupId, accountId: viewer) else {
                throw RelayError.forbidden("not a member of this group")
            }
            return info
        }
    }

    func groups(of accountId: Int64) async throws -> [GroupInfo] {
        try await pool.read { db in
            let ids = try UUID.fetchAll(
                db, sql: "SELECT group_id FROM group_member WHERE account_id = ? ORDER BY added_at", arguments: [accountId])
            return try ids.map { try Self.groupInfo(db, $0) }
        }
    }

    func groupMemberAccounts(_ groupId: UUID, requester: Int64) async throws -> [String] {
        try await group(groupId, viewer: requester).members
    }
}
