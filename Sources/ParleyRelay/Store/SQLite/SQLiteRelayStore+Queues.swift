import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    /// One write transaction for all submissions. Each submission is validated (device lists, registration
    /// ids, membership, queue limits) against the state inside the transaction, then stored, or refused
    /// with its own error without affecting the others.
    func commit(_ submissions: [MessageSubmission], limits: RelayLimits) async throws
        -> [Result<SubmissionReceipt, RelayError>]
    {
        let known = knownContacts
        let (results, contacts) = try await pool.write { db in
            let cache = SQLiteCommitCache(lookups: lookups)
            var results: [Result<SubmissionReceipt, RelayError>] = []
            results.reserveCapacity(submissions.count)
            for submission in submissions {
                let plan: Plan
                do {
                    plan = try Self.plan(db, submission, limits: limits, cache: cache)
                } catch let error as RelayError {
                    results.append(.failure(error))
                    continue
                }
                results.append(.success(try Self.store(db, submission, plan, cache: cache)))
            }
            try cache.flushCounters(db, known: known)
            return (results, cache.contacts)
        }
        known.insert(contacts)
        return results
    }

    /// What a valid submission stores: its copies, and the contact pair a 1:1 message makes.
    struct Plan {
        let copies: [PlannedCopy]
        let contact: ContactPair?
    }

    /// One ciphertext and the device queues it goes to.
    struct PlannedCopy {
        let type: Int
        let content: Data
        let targets: [DeviceAddress]
    }

    private static func plan(
        _ db: Database, _ submission: MessageSubmission, limits: RelayLimits, cache: SQLiteCommitCache
    ) throws -> Plan {
        let sender = submission.sender
        // The sending device must still exist: a removal commits in a write transaction of its own, so no send
        // of a removed device commits after it (whatever session or request it came through).
        guard try cache.activeDevices(db, accountId: sender.accountId)[sender.deviceId] != nil else {
            throw RelayError.unauthorized
        }
        var copies: [PlannedCopy] = []
        var contact: ContactPair?
        switch submission.payload {
        case .direct(let recipient, let messages, let own):
            guard let recipientId = try cache.accountId(db, name: recipient) else {
                throw RelayError.notFound("unknown account")
            }
            let isSelf = recipientId == sender.accountId
            if !isSelf { contact = ContactPair(from: sender.accountId, to: recipientId) }
            var recipientDevices = try cache.activeDevices(db, accountId: recipientId)
            if isSelf {
                recipientDevices[sender.deviceId] = nil
                guard own.isEmpty else {
                    throw RelayError.invalidField("ownDeviceMessages must be empty when sending to yourself")
                }
            }
            try check(messages, against: recipientDevices, account: recipient)
            if !isSelf {
                var ownDevices = try cache.activeDevices(db, accountId: sender.accountId)
                ownDevices[sender.deviceId] = nil
                try check(own, against: ownDevices, account: sender.account)
            }
            for message in messages {
                copies.append(
                    PlannedCopy(
                        type: message.type, content: message.content,
                        targets: [DeviceAddress(accountId: recipientId, deviceId: message.deviceId)]))
            }
            for message in own {
                copies.append(
                    PlannedCopy(
                        type: message.type, content: message.content,
                        targets: [DeviceAddress(accountId: sender.accountId, deviceId: message.deviceId)]))
            }
            guard !copies.isEmpty else { throw RelayError.invalidField("message addresses no device") }
        case .group(let groupId, let type, let content, let epoch):
            guard
                let current = try Int64.fetchOne(
                    db.cachedStatement(sql: "SELECT epoch FROM chat_group WHERE id = ?"), arguments: [groupId])
            else { throw RelayError.notFound("unknown group") }
            guard try cache.isMember(db, groupId: groupId, accountId: sender.accountId) else {
                throw RelayError.forbidden("not a member of this group")
            }
            if let epoch, epoch != current { throw RelayError.groupChanged(current: current) }
            var targets = try cache.memberDevices(db, groupId: groupId)
            targets.removeAll { $0 == sender.address }
            copies.append(PlannedCopy(type: type, content: content, targets: targets))
        }
        try checkRoom(db, copies.map { ($0.targets, $0.content.count) }, senderId: sender.accountId, limits: limits, cache: cache)
        return Plan(copies: copies, contact: contact)
    }

    /// Queue room for `copies` (target devices, ciphertext bytes each) from `senderId`, counting what earlier
    /// submissions of the same transaction added: the device's cap (`maxQueuedMessagesPerDevice`, bytes), and the
    /// sender's share of it (`maxQueuedMessagesPerSender`, bytes; copies to the sender's own devices excepted).
    /// Throws `queueFull` for the first device without room. Every path that queues (sends, group messages, group
    /// events) checks here before it stores anything.
    static func checkRoom(
        _ db: Database, _ copies: [(targets: [DeviceAddress], bytes: Int)], senderId: Int64, limits: RelayLimits,
        cache: SQLiteCommitCache
    ) throws {
        var adding: [DeviceAddress: SQLiteCommitCache.QueueState] = [:]
        for copy in copies {
            for target in copy.targets {
                adding[target, default: .init(count: 0, bytes: 0)].count += 1
                adding[target, default: .init(count: 0, bytes: 0)].bytes += copy.bytes
            }
        }
        for (target, extra) in adding {
            guard let state = try cache.queueState(db, target) else { continue }
            let count = state.count + extra.count
            let bytes = state.bytes + extra.bytes
            if count > limits.maxQueuedMessagesPerDevice || bytes > limits.maxQueuedBytesPerDevice {
                throw RelayError.queueFull(account: try accountName(db, target.accountId), deviceId: target.deviceId)
            }
            // A share is part of the queue: only a queue above the share size needs the sender's count.
            guard target.accountId != senderId,
                count > limits.maxQueuedMessagesPerSender || bytes > limits.maxQueuedBytesPerSender
            else { continue }
            let share = try cache.shareState(db, target, senderId: senderId)
            if share.count + extra.count > limits.maxQueuedMessagesPerSender
                || share.bytes + extra.bytes > limits.maxQueuedBytesPerSender
            {
                throw RelayError.queueShareFull(account: try accountName(db, target.accountId), deviceId: target.deviceId)
            }
        }
    }

    private static func accountName(_ db: Database, _ accountId: Int64) throws -> String {
        try String.fetchOne(db, sql: "SELECT name FROM account WHERE id = ?", arguments: [accountId]) ?? ""
    }

    /// 409 if the addressed device set differs from `expected`, 410 if registration ids differ.
    private static func check(_ messages: [OutgoingDeviceMessage], against expected: [UInt32: UInt32], account: String) throws {
        try DeviceSetCheck.check(messages, against: expected, account: account)
    }

    private static func store(_ db: Database, _ submission: MessageSubmission, _ plan: Plan, cache: SQLiteCommitCache)
        throws -> SubmissionReceipt
    {
        if let contact = plan.contact { cache.recordContact(contact) }
        let sender = submission.sender
        var ids: [UUID] = []
        var recipients: [DeviceAddress] = []
        var deliveries: [Delivery] = []
        let kind: EnvelopeKind
        let conversation: String
        let groupId: UUID?
        switch submission.payload {
        case .direct(let recipient, _, _):
            kind = .direct
            conversation = Envelope.directConversation(sender.account, recipient)
            groupId = nil
        case .group(let group, _, _, _):
            kind = .group
            conversation = Envelope.groupConversation(group)
            groupId = group
        }
        for copy in plan.copies {
            let id = MessageID.make(unixMillis: submission.serverTimestamp, using: &cache.random)
            let seqs = try insertMessage(
                db, id: id, kind: kind, senderId: sender.accountId, senderAccount: sender.account, senderDevice: sender.deviceId,
                conversation: conversation, groupId: groupId, type: copy.type, content: copy.content,
                serverTimestamp: submission.serverTimestamp, clientTimestamp: submission.clientTimestamp,
                targets: copy.targets, expiresAt: submission.expiresAt, cache: cache)
            let envelope = Envelope(
                id: id, kind: kind, serverTimestamp: submission.serverTimestamp,
                clientTimestamp: submission.clientTimestamp, senderAccount: sender.account,
                senderDevice: sender.deviceId, conversation: conversation, groupId: groupId, type: copy.type,
                content: copy.content)
            for (target, seq) in zip(copy.targets, seqs) {
                deliveries.append(Delivery(address: target, queued: QueuedEnvelope(seq: seq, envelope: envelope)))
            }
            ids.append(id)
            recipients.append(contentsOf: copy.targets)
        }
        return SubmissionReceipt(
            serverTimestamp: submission.serverTimestamp, ids: ids, recipients: recipients, deliveries: deliveries)
    }

    /// Stores one message row (the ciphertext, once) and one queue entry per target device. Device queue counters
    /// and per-sender shares are accumulated in `cache` and written once at the end of the transaction
    /// (`SQLiteCommitCache.flushCounters`). Returns the queue sequence number of each target's entry, in the
    /// order of `targets`.
    @discardableResult
    static func insertMessage(
        _ db: Database, id: UUID, kind: EnvelopeKind, senderId: Int64, senderAccount: String, senderDevice: UInt32,
        conversation: String, groupId: UUID?, type: Int, content: Data, serverTimestamp: Int64, clientTimestamp: Int64?,
        targets: [DeviceAddress], expiresAt: Int64, cache: SQLiteCommitCache
    ) throws -> [Int64] {
        guard !targets.isEmpty else { return [] }
        var insert = SQLiteRawStatement(
            try db.cachedStatement(
                sql: """
                    INSERT INTO message (id, kind, sender_account, sender_device, conversation, group_id, type, content,
                        server_ts, client_ts, ref_count)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """), in: db)
        insert.bind(id)
        insert.bind(kind.rawValue)
        insert.bind(senderAccount)
        insert.bind(Int64(senderDevice))
        insert.bind(conversation)
        insert.bind(groupId)
        insert.bind(Int64(type))
        insert.bind(content)
        insert.bind(serverTimestamp)
        insert.bind(clientTimestamp)
        insert.bind(Int64(targets.count))
        try insert.run()
        let insertEntry = try db.cachedStatement(
            sql: """
                INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at, sender_id)
                VALUES (?, ?, ?, ?, ?, ?)
                """)
        var seqs: [Int64] = []
        seqs.reserveCapacity(targets.count)
        for target in targets {
            var entry = SQLiteRawStatement(insertEntry, in: db)
            entry.bind(target.accountId)
            entry.bind(Int64(target.deviceId))
            entry.bind(id)
            entry.bind(Int64(content.count))
            entry.bind(expiresAt)
            entry.bind(senderId)
            try entry.run()
            seqs.append(db.lastInsertedRowID)
            cache.recordInsert(target, bytes: content.count, senderId: senderId)
        }
        return seqs
    }

    /// Drops one reference per id; deletes messages no queue refers to any more.
    static func releaseMessages(_ db: Database, _ ids: [Data]) throws {
        for id in ids {
            try db.execute(sql: "UPDATE message SET ref_count = ref_count - 1 WHERE id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM message WHERE id = ? AND ref_count <= 0", arguments: [id])
        }
    }

    func pending(_ address: DeviceAddress, afterSeq: Int64, limit: Int, maxBytes: Int) async throws -> [QueuedEnvelope] {
        try await pool.read { db in
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT q.seq, m.id, m.kind, m.server_ts, m.client_ts, m.sender_account, m.sender_device,
                        m.conversation, m.group_id, m.type, m.content
                    FROM queue_entry q JOIN message m ON m.id = q.message_id
                    WHERE q.account_id = ? AND q.device_id = ? AND q.seq > ? ORDER BY q.seq LIMIT ?
                    """,
                arguments: [address.accountId, Int64(address.deviceId), afterSeq, limit])
            var page: [QueuedEnvelope] = []
            var bytes = 0
            while bytes < maxBytes, let row = try rows.next() {
                let kind: String = row["kind"]
                let senderDevice: Int64 = row["sender_device"]
                let content: Data = row["content"]
                bytes += content.count
                let envelope = Envelope(
                    id: row["id"], kind: EnvelopeKind(rawValue: kind) ?? .direct, serverTimestamp: row["server_ts"],
                    clientTimestamp: row["client_ts"], senderAccount: row["sender_account"],
                    senderDevice: UInt32(truncatingIfNeeded: senderDevice), conversation: row["conversation"],
                    groupId: row["group_id"], type: row["type"], content: content)
                page.append(QueuedEnvelope(seq: row["seq"], envelope: envelope))
            }
            return page
        }
    }

    /// Ids acknowledged per statement: a device's ack frame is applied with three statements per chunk (delete
    /// the entries returning their sizes, delete the messages they were the last reference of, decrement the
    /// others), not two or three per id.
    static let ackChunk = 32

    func ack(_ batch: [(DeviceAddress, [UUID])]) async throws -> [Int] {
        try await pool.write { db in
            let counters = try db.cachedStatement(
                sql: """
                    UPDATE device SET queue_count = queue_count - ?, queue_bytes = queue_bytes - ?
                    WHERE account_id = ? AND device_id = ?
                    """)
            var results: [Int] = []
            results.reserveCapacity(batch.count)
            for (address, ids) in batch {
                var removed = 0
                var bytes = 0
                var shares: [Int64: SQLiteCommitCache.QueueState] = [:]
                var unique = Set<UUID>(minimumCapacity: ids.count)
                let distinct = ids.filter { unique.insert($0).inserted }
                var start = 0
                while start < distinct.count {
                    let chunk = distinct[start..<min(start + Self.ackChunk, distinct.count)]
                    start += chunk.count
                    let (count, size) = try Self.ackChunk(db, address, chunk, shares: &shares)
                    removed += count
                    bytes += size
                }
                if removed > 0 {
                    try counters.execute(arguments: [removed, bytes, address.accountId, Int64(address.deviceId)])
                    try Self.releaseShares(db, address, shares)
                }
                results.append(removed)
            }
            return results
        }
    }

    /// Removes one device's entries for `ids` (those it still has) and releases their messages; returns how
    /// many entries were removed and their bytes.
    private static func ackChunk(
        _ db: Database, _ address: DeviceAddress, _ ids: ArraySlice<UUID>, shares: inout [Int64: SQLiteCommitCache.QueueState]
    ) throws -> (Int, Int) {
        let deleteEntries = try db.cachedStatement(
            sql: """
                DELETE FROM queue_entry WHERE message_id IN (\(placeholders(ids.count))) AND account_id = ? AND device_id = ?
                RETURNING message_id, size, sender_id
                """)
        var arguments = StatementArguments(ids.map { $0 as (any DatabaseValueConvertible)? })
        arguments += [address.accountId, Int64(address.deviceId)]
        var released: [Data] = []
        released.reserveCapacity(ids.count)
        var bytes = 0
        let rows = try Row.fetchCursor(deleteEntries, arguments: arguments)
        while let row = try rows.next() {
            released.append(row[0])
            let size: Int = row[1]
            bytes += size
            if let senderId: Int64 = row[2], senderId != address.accountId {
                shares[senderId, default: .init(count: 0, bytes: 0)].count += 1
                shares[senderId, default: .init(count: 0, bytes: 0)].bytes += size
            }
        }
        guard !released.isEmpty else { return (0, 0) }
        let messageArguments = StatementArguments(released.map { $0 as (any DatabaseValueConvertible)? })
        // Messages this was the last reference of go; shared (group) messages lose one reference.
        try db.cachedStatement(sql: "DELETE FROM message WHERE ref_count <= 1 AND id IN (\(placeholders(released.count)))")
            .execute(arguments: messageArguments)
        if db.changesCount < released.count {
            try db.cachedStatement(sql: "UPDATE message SET ref_count = ref_count - 1 WHERE id IN (\(placeholders(released.count)))")
                .execute(arguments: messageArguments)
        }
        return (released.count, bytes)
    }

    /// Takes released entries off their senders' shares of a device queue; a share that reaches zero goes.
    static func releaseShares(_ db: Database, _ address: DeviceAddress, _ shares: [Int64: SQLiteCommitCache.QueueState]) throws {
        guard !shares.isEmpty else { return }
        let update = try db.cachedStatement(
            sql: """
                UPDATE queue_share SET count = count - ?, bytes = bytes - ?
                WHERE account_id = ? AND device_id = ? AND sender_id = ?
                RETURNING count
                """)
        let delete = try db.cachedStatement(
            sql: "DELETE FROM queue_share WHERE account_id = ? AND device_id = ? AND sender_id = ?")
        let deviceId = Int64(address.deviceId)
        for (senderId, state) in shares {
            let left = try Int.fetchOne(
                update, arguments: [state.count, state.bytes, address.accountId, deviceId, senderId])
            if let left, left <= 0 {
                try delete.execute(arguments: [address.accountId, deviceId, senderId])
            }
        }
    }

    /// "?, ?, ..." for `count` parameters.
    private static func placeholders(_ count: Int) -> String {
        repeatElement("?", count: count).joined(separator: ", ")
    }

    func deleteExpired(now: Int64) async throws -> ExpiryResult {
        try await writeChangingLookups { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, account_id, device_id, message_id, size, sender_id FROM queue_entry WHERE expires_at <= ?
                    ORDER BY expires_at LIMIT ?
                    """,
                arguments: [now, RelayLimits.expiryBatchSize])
            var affected = Set<DeviceAddress>()
            var shares: [DeviceAddress: [Int64: SQLiteCommitCache.QueueState]] = [:]
            var messageIds: [Data] = []
            for row in rows {
                let seq: Int64 = row["seq"]
                let accountId: Int64 = row["account_id"]
                let deviceId: Int64 = row["device_id"]
                let size: Int = row["size"]
                try db.execute(sql: "DELETE FROM queue_entry WHERE seq = ?", arguments: [seq])
                try db.execute(
                    sql: """
                        UPDATE device SET queue_count = queue_count - 1, queue_bytes = queue_bytes - ?
                        WHERE account_id = ? AND device_id = ?
                        """,
                    arguments: [size, accountId, deviceId])
                messageIds.append(row["message_id"])
                let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
                affected.insert(address)
                if let senderId: Int64 = row["sender_id"], senderId != accountId {
                    shares[address, default: [:]][senderId, default: .init(count: 0, bytes: 0)].count += 1
                    shares[address, default: [:]][senderId, default: .init(count: 0, bytes: 0)].bytes += size
                }
            }
            for (address, senders) in shares { try Self.releaseShares(db, address, senders) }
            try Self.releaseMessages(db, messageIds)
            try Self.deleteStaleLinks(db, now: now)
            return ExpiryResult(expiredMessages: rows.count, affected: Array(affected))
        }
    }

    func totalQueued() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(queue_count), 0) FROM device") ?? 0 }
    }
}
