import Foundation
import ParleyWire
import PostgresNIO

/// Groups: members with roles (`admin`, `member`) and a version (`chat_group.epoch`) that every change of members or
/// admins increments; each change queues one `groupEvent` naming the version it produced and the members and admins
/// after it. Changes of one group take turns on its row lock (`groupInfo(lock: true)`); sends read the group under a
/// share lock of the same row (`commit`).
extension PostgresRelayStore {
    enum GroupRole: String {
        case admin, member
    }

    func role(_ connection: PostgresConnection, groupId: UUID, accountId: Int64) async throws -> GroupRole? {
        try await rows(connection, "SELECT role FROM group_member WHERE group_id = \(groupId) AND account_id = \(accountId)")
            .first.flatMap { GroupRole(rawValue: try $0.decode(String.self)) }
    }

    /// The group as `actor` may change it, its row locked: it exists and `actor` is a member (`.forbidden`
    /// otherwise), and with `admin`, `actor` is an admin (`.notAdmin` otherwise, saying what was refused).
    func requireMember(_ connection: PostgresConnection, groupId: UUID, actor: AuthenticatedDevice, admin refused: String?) async throws {
        _ = try await groupInfo(connection, groupId, lock: true)
        guard let role = try await role(connection, groupId: groupId, accountId: actor.accountId) else {
            throw RelayError.forbidden("not a member of this group")
        }
        if let refused, role != .admin { throw RelayError.notAdmin("only a group admin may \(refused)") }
    }

    /// Increments the group's version and returns the group as it is now.
    func bumpEpoch(_ connection: PostgresConnection, _ groupId: UUID) async throws -> GroupInfo {
        try await rows(connection, "UPDATE chat_group SET epoch = epoch + 1 WHERE id = \(groupId)")
        return try await groupInfo(connection, groupId)
    }

    func isMember(_ connection: PostgresConnection, groupId: UUID, accountId: Int64) async throws -> Bool {
        try await !rows(connection, "SELECT 1 FROM group_member WHERE group_id = \(groupId) AND account_id = \(accountId)").isEmpty
    }

    /// Every active device of every member, ordered by account and device.
    func memberDevices(_ connection: PostgresConnection, groupId: UUID) async throws -> [DeviceAddress] {
        try await rows(
            connection,
            """
            SELECT d.account_id, d.device_id FROM group_member g
            JOIN device d ON d.account_id = g.account_id AND d.state = 'active'
            WHERE g.group_id = \(groupId) ORDER BY d.account_id, d.device_id
            """
        ).map { row in
            let (accountId, deviceId) = try row.decode((Int64, Int64).self)
            return DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
        }
    }

    /// The group's info; with `lock`, its row is locked (member changes of one group take turns).
    func groupInfo(_ connection: PostgresConnection, _ groupId: UUID, lock: Bool = false) async throws -> GroupInfo {
        guard
            let row = try await rows(
                connection,
                PostgresQuery(
                    unsafeSQL: "SELECT creator, created_at, epoch FROM chat_group WHERE id = $1" + (lock ? " FOR UPDATE" : ""),
                    binds: try Self.bindings(groupId))
            ).first
        else { throw RelayError.notFound("unknown group") }
        let (creator, createdAt, epoch) = try row.decode((String, Int64, Int64).self)
        var members: [String] = []
        var admins: [String] = []
        for row in try await rows(
            connection,
            """
            SELECT a.name, g.role FROM group_member g JOIN account a ON a.id = g.account_id WHERE g.group_id = \(groupId)
            ORDER BY a.name COLLATE "C"
            """)
        {
            let (name, role) = try row.decode((String, String).self)
            members.append(name)
            if role == GroupRole.admin.rawValue { admins.append(name) }
        }
        return GroupInfo(groupId: groupId, creator: creator, members: members, createdAt: createdAt, admins: admins, epoch: epoch)
    }

    /// Resolves account names to ids (sorted by name, each once); throws `.notFound` naming the first unknown.
    func resolve(_ connection: PostgresConnection, _ names: [String]) async throws -> [(name: String, id: Int64)] {
        let unique = Set(names).sorted()
        var ids: [String: Int64] = [:]
        for row in try await rows(connection, "SELECT name, id FROM account WHERE name = ANY(\(unique))") {
            let (name, id) = try row.decode((String, Int64).self)
            ids[name] = id
        }
        return try unique.map { name in
            guard let id = ids[name] else { throw RelayError.notFound("unknown account \(name)") }
            return (name, id)
        }
    }

    /// Queues a relay-generated membership event to `targets` (their device rows are locked here, in order), stamped
    /// with the group's state after the change (`info`). Events take queue room like messages, from the actor's share:
    /// a target without room refuses the whole change (`queueFull`, thrown before anything of the event is stored; the
    /// caller's transaction then rolls back).
    func insertGroupEvent(
        _ connection: PostgresConnection, action: GroupEvent.Action, members: [String], promoted: [String]? = nil,
        info: GroupInfo, actor: AuthenticatedDevice, targets: [DeviceAddress], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws {
        guard !targets.isEmpty else { return }
        let event = GroupEvent(
            groupId: info.groupId, action: action, actor: actor.account, members: members, epoch: info.epoch,
            currentMembers: info.members, admins: info.admins, promoted: promoted)
        let content = try WireCoding.encoder().encode(event)
        let unique = Array(Set(targets))
        var devices: [DeviceAddress: LockedDevice] = [:]
        var names: [Int64: String] = [:]
        for row in try await rows(
            connection,
            """
            SELECT d.account_id, d.device_id, d.queue_count - COALESCE(r.count, 0), d.queue_bytes - COALESCE(r.bytes, 0),
                d.queue_seq, a.name
            FROM device d
            JOIN unnest(\(unique.map(\.accountId)), \(unique.map { Int64($0.deviceId) })) AS t(a, v)
                ON d.account_id = t.a AND d.device_id = t.v
            JOIN account a ON a.id = d.account_id
            LEFT JOIN queue_release r ON r.account_id = d.account_id AND r.device_id = d.device_id
            ORDER BY d.account_id, d.device_id FOR NO KEY UPDATE OF d
            """)
        {
            let (accountId, deviceId, count, bytes, seq, name) = try row.decode((Int64, Int64, Int64, Int64, Int64, String).self)
            devices[DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))] = LockedDevice(
                registrationId: 0, active: true, count: Int(count), bytes: Int(bytes), seq: seq)
            names[accountId] = name
        }
        var adding: [DeviceAddress: Room] = [:]
        for target in targets where devices[target] != nil {
            adding[target, default: Room()].count += 1
            adding[target, default: Room()].bytes += content.count
        }
        var shares = try await loadShares(
            connection, candidates: Self.shareCandidates(devices, adding: Room(count: 1, bytes: content.count), limits: limits),
            senders: [actor.accountId])
        try Self.checkRoom(adding, senderId: actor.accountId, devices: &devices, shares: &shares, names: names, limits: limits)
        let copy = Copy(
            id: MessageID.make(unixMillis: now), kind: .groupEvent, senderId: actor.accountId, senderAccount: actor.account,
            senderDevice: actor.deviceId,
            conversation: Envelope.groupConversation(event.groupId), groupId: event.groupId, type: 0, content: content,
            serverTimestamp: now, clientTimestamp: nil, expiresAt: expiresAt, targets: targets.filter { devices[$0] != nil })
        _ = try await insertCopies(connection, [copy], devices: &devices)
    }

    func createGroup(creator: AuthenticatedDevice, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits)
        async throws -> (GroupInfo, AffectedQueues)
    {
        let maxMembers = limits.maxGroupMembers
        return try await transaction { [self] connection in
            var ids = try await resolve(connection, members).map(\.id)
            if !ids.contains(creator.accountId) { ids.append(creator.accountId) }
            guard ids.count <= maxMembers else { throw RelayError.groupFull }
            let groupId = UUID()
            try await rows(
                connection,
                "INSERT INTO chat_group (id, creator, created_at, epoch) VALUES (\(groupId), \(creator.account), \(now), 1)")
            let creatorId = creator.accountId
            try await rows(
                connection,
                """
                INSERT INTO group_member (group_id, account_id, added_at, role)
                SELECT \(groupId), a, \(now), CASE WHEN a = \(creatorId) THEN 'admin' ELSE 'member' END FROM unnest(\(ids)) AS t(a)
                """)
            let info = try await groupInfo(connection, groupId)
            let targets = try await memberDevices(connection, groupId: groupId)
            try await insertGroupEvent(
                connection, action: .created, members: info.members, info: info, actor: creator, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func addGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        let maxMembers = limits.maxGroupMembers
        return try await transaction { [self] connection in
            try await requireMember(connection, groupId: groupId, actor: actor, admin: "add members")
            let resolved = try await resolve(connection, members)
            var added: [String] = []
            for (name, id) in resolved {
                let inserted = try await rows(
                    connection,
                    """
                    INSERT INTO group_member (group_id, account_id, added_at, role) VALUES (\(groupId), \(id), \(now), 'member')
                    ON CONFLICT (group_id, account_id) DO NOTHING RETURNING 1
                    """)
                if !inserted.isEmpty { added.append(name) }
            }
            guard !added.isEmpty else { return (try await groupInfo(connection, groupId), .none) }
            let info = try await bumpEpoch(connection, groupId)
            guard info.members.count <= maxMembers else { throw RelayError.groupFull }
            let targets = try await memberDevices(connection, groupId: groupId)
            try await insertGroupEvent(
                connection, action: .membersAdded, members: added, info: info, actor: actor, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func removeGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await transaction { [self] connection in
            let leaving = Set(members) == [actor.account]
            try await requireMember(connection, groupId: groupId, actor: actor, admin: leaving ? nil : "remove other members")
            let before = try await memberDevices(connection, groupId: groupId)
            let resolved = try await resolve(connection, members)
            var removed: [String] = []
            for (name, id) in resolved {
                let deleted = try await rows(
                    connection, "DELETE FROM group_member WHERE group_id = \(groupId) AND account_id = \(id) RETURNING 1")
                if !deleted.isEmpty { removed.append(name) }
            }
            guard !removed.isEmpty else { return (try await groupInfo(connection, groupId), .none) }
            // Members but no admin left: the longest-standing member (earliest added, then name) becomes one.
            var promoted: [String]? = nil
            let hasAdmin = try await !rows(
                connection, "SELECT 1 FROM group_member WHERE group_id = \(groupId) AND role = 'admin' LIMIT 1"
            ).isEmpty
            if !hasAdmin,
                let heir = try await rows(
                    connection,
                    """
                    SELECT g.account_id, a.name FROM group_member g JOIN account a ON a.id = g.account_id
                    WHERE g.group_id = \(groupId) ORDER BY g.added_at, a.name COLLATE "C" LIMIT 1
                    """
                ).first
            {
                let (heirId, heirName) = try heir.decode((Int64, String).self)
                try await rows(
                    connection, "UPDATE group_member SET role = 'admin' WHERE group_id = \(groupId) AND account_id = \(heirId)")
                promoted = [heirName]
            }
            let info = try await bumpEpoch(connection, groupId)
            // Removed members learn about it too.
            try await insertGroupEvent(
                connection, action: .membersRemoved, members: removed, promoted: promoted, info: info, actor: actor,
                targets: before, now: now, expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: before))
        }
    }

    func addGroupAdmins(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await transaction { [self] connection in
            try await requireMember(connection, groupId: groupId, actor: actor, admin: "make admins")
            var promoted: [String] = []
            for (name, id) in try await resolve(connection, members) {
                switch try await role(connection, groupId: groupId, accountId: id) {
                case nil: throw RelayError.invalidField("\(name) is not a member of this group")
                case .admin: continue
                case .member:
                    try await rows(
                        connection, "UPDATE group_member SET role = 'admin' WHERE group_id = \(groupId) AND account_id = \(id)")
                    promoted.append(name)
                }
            }
            guard !promoted.isEmpty else { return (try await groupInfo(connection, groupId), .none) }
            let info = try await bumpEpoch(connection, groupId)
            let targets = try await memberDevices(connection, groupId: groupId)
            try await insertGroupEvent(
                connection, action: .adminsAdded, members: promoted, info: info, actor: actor, targets: targets, now: now,
                expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func group(_ groupId: UUID, viewer: Int64) async throws -> GroupInfo {
        try await read { [self] connection in
            let info = try await groupInfo(connection, groupId)
            guard try await isMember(connection, groupId: groupId, accountId: viewer) else {
                throw RelayError.forbidden("not a member of this group")
            }
            return info
        }
    }

    func groups(of accountId: Int64) async throws -> [GroupInfo] {
        try await read { [self] connection in
            let ids = try await rows(
                connection, "SELECT group_id FROM group_member WHERE account_id = \(accountId) ORDER BY added_at, group_id"
            ).map { try $0.decode(UUID.self) }
            var result: [GroupInfo] = []
            for id in ids { result.append(try await groupInfo(connection, id)) }
            return result
        }
    }

    func groupMemberAccounts(_ groupId: UUID, requester: Int64) async throws -> [String] {
        try await group(groupId, viewer: requester).members
    }
}
