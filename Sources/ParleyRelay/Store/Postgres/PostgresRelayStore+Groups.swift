import Foundation
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
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
                    unsafeSQL: "SELECT creator, created_at FROM chat_group WHERE id = $1" + (lock ? " FOR UPDATE" : ""),
                    binds: try Self.bindings(groupId))
            ).first
        else { throw RelayError.notFound("unknown group") }
        let (creator, createdAt) = try row.decode((String, Int64).self)
        let members = try await rows(
            connection,
            """
            SELECT a.name FROM group_member g JOIN account a ON a.id = g.account_id WHERE g.group_id = \(groupId)
            ORDER BY a.name COLLATE "C"
            """
        ).map { try $0.decode(String.self) }
        return GroupInfo(groupId: groupId, creator: creator, members: members, createdAt: createdAt)
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

    /// Queues a relay-generated membership event to `targets` (their device rows are locked here, in order). Events
    /// take queue room like messages, from the actor's share: a target without room refuses the whole change
    /// (`queueFull`, thrown before anything of the event is stored; the caller's transaction then rolls back).
    func insertGroupEvent(
        _ connection: PostgresConnection, event: GroupEvent, actor: AuthenticatedDevice, targets: [DeviceAddress], now: Int64,
        expiresAt: Int64, limits: RelayLimits
    ) async throws {
        guard !targets.isEmpty else { return }
        let content = try WireCoding.encoder().encode(event)
        let unique = Array(Set(targets))
        var devices: [DeviceAddress: LockedDevice] = [:]
        var names: [Int64: String] = [:]
        for row in try await rows(
            connection,
            """
            SELECT d.account_id, d.device_id, d.queue_count, d.queue_bytes, d.queue_seq, a.name FROM device d
            JOIN unnest(\(unique.map(\.accountId)), \(unique.map { Int64($0.deviceId) })) AS t(a, v)
                ON d.account_id = t.a AND d.device_id = t.v
            JOIN account a ON a.id = d.account_id
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
                connection, "INSERT INTO chat_group (id, creator, created_at) VALUES (\(groupId), \(creator.account), \(now))")
            try await rows(
                connection,
                "INSERT INTO group_member (group_id, account_id, added_at) SELECT \(groupId), a, \(now) FROM unnest(\(ids)) AS t(a)")
            let info = try await groupInfo(connection, groupId)
            let targets = try await memberDevices(connection, groupId: groupId)
            try await insertGroupEvent(
                connection, event: GroupEvent(groupId: groupId, action: .created, actor: creator.account, members: info.members),
                actor: creator, targets: targets, now: now, expiresAt: expiresAt, limits: limits)
            return (info, AffectedQueues(devices: targets))
        }
    }

    func addGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        let maxMembers = limits.maxGroupMembers
        return try await transaction { [self] connection in
            _ = try await groupInfo(connection, groupId, lock: true)
            guard try await isMember(connection, groupId: groupId, accountId: actor.accountId) else {
                throw RelayError.forbidden("not a member of this group")
            }
            let resolved = try await resolve(connection, members)
            var added: [String] = []
            for (name, id) in resolved {
                let inserted = try await rows(
                    connection,
                    """
                    INSERT INTO group_member (group_id, account_id, added_at) VALUES (\(groupId), \(id), \(now))
                    ON CONFLICT (group_id, account_id) DO NOTHING RETURNING 1
                    """)
                if !inserted.isEmpty { added.append(name) }
            }
            let info = try await groupInfo(connection, groupId)
            guard info.members.count <= maxMembers else { throw RelayError.groupFull }
            let targets = try await memberDevices(connection, groupId: groupId)
            if !added.isEmpty {
                try await insertGroupEvent(
                    connection, event: GroupEvent(groupId: groupId, action: .membersAdded, actor: actor.account, members: added),
                    actor: actor, targets: targets, now: now, expiresAt: expiresAt, limits: limits)
            }
            return (info, AffectedQueues(devices: added.isEmpty ? [] : targets))
        }
    }

    func removeGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues) {
        try await transaction { [self] connection in
            _ = try await groupInfo(connection, groupId, lock: true)
            guard try await isMember(connection, groupId: groupId, accountId: actor.accountId) else {
                throw RelayError.forbidden("not a member of this group")
            }
            let before = try await memberDevices(connection, groupId: groupId)
            let resolved = try await resolve(connection, members)
            var removed: [String] = []
            for (name, id) in resolved {
                let deleted = try await rows(
                    connection, "DELETE FROM group_member WHERE group_id = \(groupId) AND account_id = \(id) RETURNING 1")
                if !deleted.isEmpty { removed.append(name) }
            }
            let info = try await groupInfo(connection, groupId)
            if !removed.isEmpty {
                // Removed members learn about it too.
                try await insertGroupEvent(
                    connection,
                    event: GroupEvent(groupId: groupId, action: .membersRemoved, actor: actor.account, members: removed),
                    actor: actor, targets: before, now: now, expiresAt: expiresAt, limits: limits)
            }
            return (info, AffectedQueues(devices: removed.isEmpty ? [] : before))
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
