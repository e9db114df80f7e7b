import Foundation
import GRDB
import ParleyWire

/// Groups: members with roles (`admin`, `member`) and a version (`chat_group.epoch`) that every change of
/// members or admins increments; each change queues one `groupEvent` naming the version it produced and
/// the members and admins after it.
extension SQLiteRelayStore {
    enum GroupRole: String {
        case admin, member
    }

    static func isMember(_ db: Database, groupId: UUID, accountId: Int64) throws -> Bool {
        try Bool.fetchOne(
            db, sql: "SELECT 1 FROM group_member WHERE group_id = ? AND account_id = ?", arguments: [groupId, accountId])
            ?? false
    }

    static func role(_ db: Database, groupId: UUID, accountId: Int64) throws -> GroupRole? {
        try String.fetchOne(
            db, sql: "SELECT role FROM group_member WHERE group_id = ? AND account_id = ?", arguments: [groupId, accountId]
        ).flatMap(GroupRole.init(rawValue:))
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
        guard
            let row = try Row.fetchOne(db, sql: "SELECT creator, created_at, epoch FROM chat_group WHERE id = ?", arguments: [groupId])
        else { throw RelayError.notFound("unknown group") }
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT a.name, g.role FROM group_member g JOIN account a ON a.id = g.account_id
                WHERE g.group_id = ? ORDER BY a.name
                """,
            arguments: [groupId])
        let members = rows.map { $0["name"] as String }
        let admins = rows.filter { ($0["role"] as String) == GroupRole.admin.rawValue }.map { $0["name"] as String }
        return GroupInfo(
            groupId: groupId, creator: row["creator"], members: members, createdAt: row["created_at"], admins: admins,
            epoch: row["epoch"])
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

    /// The group as `actor` may change it: it exists and `actor` is a member (`.forbidden` otherwise), and
    /// with `admin`, `actor` is an admin (`.notAdmin` otherwise, saying what was refused).
    static func requireMember(_ db: Database, groupId: UUID, actor: AuthenticatedDevice, admin refused: String?) throws {
        _ = try groupInfo(db, groupId)
        guard let role = try role(db, groupId: groupId, accountId: actor.accountId) else {
            throw RelayError.forbidden("not a member of this group")
        }
        if let refused, role != .admin { throw RelayError.notAdmin("only a group admin may \(refused)") }
    }

    /// Increments the group's version and returns the group as it is now.
    static func bumpEpoch(_ db: Database, _ groupId: UUID) throws -> GroupInfo {
        try db.execute(sql: "UPDATE chat_group SET epoch = epoch + 1 WHERE id = ?", arguments: [groupId])
        return try groupInfo(db, groupId)
    }

    /// Queues a relay-generated membership event to `targets`, stamped with the group's state after it. Events
    /// take queue room like messages, from the actor's share: a target without room refuses the whole change
    /// (`queueFull`, thrown before the event is stored; the caller's transaction then rolls back the change).
    static func insertGroupEvent(
        _ db: Database, action: GroupEvent.Action, members: [String], promoted: [String]? = nil, info: GroupInfo,
        actor: AuthenticatedDevice, targets: [DeviceAddress], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) throws {
        let event = GroupEvent(
            groupId: info.groupId, action: action, actor: actor.account, members: members, epoch: info.epoch,
            currentMembers: info.members, admins: info.admins, promoted: promoted)
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
                sql: "INSERT INTO chat_group (id, creator, created_at, epoch) VALUES (?, ?, ?, 1)",
                arguments: [groupId, creator.account, now])
            for id in ids {
                let role: GroupRole = id == creator.accountId ? .admin : .member
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account_id, added_at, role) VALUES (?, ?, ?, ?)",
                    arguments: [groupId, id, now, role.rawValue])
            }
            let info = try Self.groupInfo(db, groupId)
            let targets = try Self.memberDevices(db, groupId: groupId)
            try Self.insertGroupEvent(
                db, action: .created, members: info.members, info: info, actor: creator, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func addGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        let maxMembers = limits.maxGroupMembers
        return try await writeChangingLookups { db in
            try Self.requireMember(db, groupId: groupId, actor: actor, admin: "add members")
            let ids = try Self.resolve(db, members)
            var added: [String] = []
            for (id, name) in zip(ids, Set(members).sorted()) where try !Self.isMember(db, groupId: groupId, accountId: id) {
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account_id, added_at, role) VALUES (?, ?, ?, 'member')",
                    arguments: [groupId, id, now])
                added.append(name)
            }
            guard !added.isEmpty else { return (try Self.groupInfo(db, groupId), .none) }
            let info = try Self.bumpEpoch(db, groupId)
            guard info.members.count <= maxMembers else { throw RelayError.groupFull }
            let targets = try Self.memberDevices(db, groupId: groupId)
            try Self.insertGroupEvent(
                db, action: .membersAdded, members: added, info: info, actor: actor, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func removeGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await writeChangingLookups { db in
            let leaving = Set(members) == [actor.account]
            try Self.requireMember(db, groupId: groupId, actor: actor, admin: leaving ? nil : "remove other members")
            let before = try Self.memberDevices(db, groupId: groupId)
            let ids = try Self.resolve(db, members)
            var removed: [String] = []
            for (id, name) in zip(ids, Set(members).sorted()) where try Self.isMember(db, groupId: groupId, accountId: id) {
                try db.execute(
                    sql: "DELETE FROM group_member WHERE group_id = ? AND account_id = ?", arguments: [groupId, id])
                removed.append(name)
            }
            guard !removed.isEmpty else { return (try Self.groupInfo(db, groupId), .none) }
            // Members but no admin left: the longest-standing member becomes one.
            var promoted: [String]? = nil
            let hasAdmin =
                try Bool.fetchOne(
                    db, sql: "SELECT 1 FROM group_member WHERE group_id = ? AND role = 'admin' LIMIT 1", arguments: [groupId]) ?? false
            if !hasAdmin,
                let heir = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT g.account_id, a.name FROM group_member g JOIN account a ON a.id = g.account_id
                        WHERE g.group_id = ? ORDER BY g.added_at, a.name LIMIT 1
                        """,
                    arguments: [groupId])
            {
                try db.execute(
                    sql: "UPDATE group_member SET role = 'admin' WHERE group_id = ? AND account_id = ?",
                    arguments: [groupId, heir["account_id"] as Int64])
                promoted = [heir["name"]]
            }
            let info = try Self.bumpEpoch(db, groupId)
            // Removed members learn about it too.
            try Self.insertGroupEvent(
                db, action: .membersRemoved, members: removed, promoted: promoted, info: info, actor: actor, targets: before,
                now: now, expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: before))
        }
    }

    func addGroupAdmins(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await writeChangingLookups { db in
            try Self.requireMember(db, groupId: groupId, actor: actor, admin: "make admins")
            let ids = try Self.resolve(db, members)
            var promoted: [String] = []
            for (id, name) in zip(ids, Set(members).sorted()) {
                switch try Self.role(db, groupId: groupId, accountId: id) {
                case nil: throw RelayError.invalidField("\(name) is not a member of this group")
                case .admin: continue
                case .member:
                    try db.execute(
                        sql: "UPDATE group_member SET role = 'admin' WHERE group_id = ? AND account_id = ?", arguments: [groupId, id])
                    promoted.append(name)
                }
            }
            guard !promoted.isEmpty else { return (try Self.groupInfo(db, groupId), .none) }
            let info = try Self.bumpEpoch(db, groupId)
            let targets = try Self.memberDevices(db, groupId: groupId)
            try Self.insertGroupEvent(
                db, action: .adminsAdded, members: promoted, info: info, actor: actor, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
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
