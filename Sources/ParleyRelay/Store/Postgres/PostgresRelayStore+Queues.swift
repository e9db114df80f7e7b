import Foundation
import NIOCore
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
    /// A device row as a send batch sees it: locked for the whole transaction.
    struct LockedDevice {
        var registrationId: UInt32
        var active: Bool
        var count: Int
        var bytes: Int
        /// The last sequence number given to an entry of this device's queue.
        var seq: Int64
    }

    /// One ciphertext to store and the device queues it goes to.
    struct Copy {
        let id: UUID
        let kind: EnvelopeKind
        /// The sending account's id: whose share of the target queues the copy takes.
        let senderId: Int64
        let senderAccount: String
        let senderDevice: UInt32
        let conversation: String
        let groupId: UUID?
        let type: Int
        let content: Data
        let serverTimestamp: Int64
        let clientTimestamp: Int64?
        let expiresAt: Int64
        let targets: [DeviceAddress]
        /// When the submission was made (`DeliveryTrace`; 0 unless tracing is on).
        var receivedAt: UInt64 = 0

        var envelope: Envelope {
            Envelope(
                id: id, kind: kind, serverTimestamp: serverTimestamp, clientTimestamp: clientTimestamp,
                senderAccount: senderAccount, senderDevice: senderDevice, conversation: conversation, groupId: groupId,
                type: type, content: content)
        }
    }

    /// Stand-ins for NULL in the array parameters of the multi-row inserts (arrays of nullable values do not bind).
    static let noGroup = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    static let noClientTimestamp = Int64.min

    /// A sender's share of one device queue.
    struct ShareKey: Hashable {
        let address: DeviceAddress
        let senderId: Int64
    }

    /// Queue room taken: entries and ciphertext bytes.
    struct Room {
        var count = 0
        var bytes = 0
    }

    /// The stored shares of `senders` in the queues of `candidates`, less what acks released (read after the
    /// devices' rows were locked: a share grows only under its device's lock; acks committed since only make it
    /// smaller than read, so the check errs on the full side).
    func loadShares(_ connection: PostgresConnection, candidates: [DeviceAddress], senders: Set<Int64>) async throws
        -> [ShareKey: Room]
    {
        guard !candidates.isEmpty, !senders.isEmpty else { return [:] }
        var shares: [ShareKey: Room] = [:]
        for row in try await rows(
            connection,
            """
            SELECT s.account_id, s.device_id, s.sender_id, s.count - COALESCE(r.count, 0), s.bytes - COALESCE(r.bytes, 0)
            FROM queue_share s
            JOIN unnest(\(candidates.map(\.accountId)), \(candidates.map { Int64($0.deviceId) })) AS t(a, v)
                ON s.account_id = t.a AND s.device_id = t.v
            LEFT JOIN queue_share_release r
                ON r.account_id = s.account_id AND r.device_id = s.device_id AND r.sender_id = s.sender_id
            WHERE s.sender_id = ANY(\(Array(senders)))
            """)
        {
            let (accountId, deviceId, senderId, count, bytes) = try row.decode((Int64, Int64, Int64, Int64, Int64).self)
            let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
            shares[ShareKey(address: address, senderId: senderId)] = Room(count: Int(count), bytes: Int(bytes))
        }
        return shares
    }

    /// The locked devices whose queue could pass a sender's share size once up to `adding` more entries (`bytes`)
    /// are queued: only those need their shares read (a queue within the share size cannot hold a full share).
    static func shareCandidates(_ devices: [DeviceAddress: LockedDevice], adding: Room, limits: RelayLimits) -> [DeviceAddress] {
        devices.compactMap { address, device in
            device.count + adding.count > limits.maxQueuedMessagesPerSender
                || device.bytes + adding.bytes > limits.maxQueuedBytesPerSender ? address : nil
        }
    }

    /// Queue room for `adding` (per target device) from `senderId`, as the SQLite store checks it: the device's cap
    /// (`maxQueuedMessagesPerDevice`, bytes) and the sender's share of it (`maxQueuedMessagesPerSender`, bytes;
    /// copies to the sender's own devices excepted), counting what the transaction added before. Throws for the
    /// first device without room; otherwise records the additions in `devices` and `shares`.
    static func checkRoom(
        _ adding: [DeviceAddress: Room], senderId: Int64, devices: inout [DeviceAddress: LockedDevice],
        shares: inout [ShareKey: Room], names: [Int64: String], limits: RelayLimits
    ) throws(RelayError) {
        for (target, extra) in adding {
            guard let state = devices[target] else { continue }
            let count = state.count + extra.count
            let bytes = state.bytes + extra.bytes
            if count > limits.maxQueuedMessagesPerDevice || bytes > limits.maxQueuedBytesPerDevice {
                throw .queueFull(account: names[target.accountId] ?? "", deviceId: target.deviceId)
            }
            // A share is part of the queue: only a queue above the share size needs the sender's count.
            guard target.accountId != senderId,
                count > limits.maxQueuedMessagesPerSender || bytes > limits.maxQueuedBytesPerSender
            else { continue }
            let share = shares[ShareKey(address: target, senderId: senderId)] ?? Room()
            if share.count + extra.count > limits.maxQueuedMessagesPerSender
                || share.bytes + extra.bytes > limits.maxQueuedBytesPerSender
            {
                throw .queueShareFull(account: names[target.accountId] ?? "", deviceId: target.deviceId)
            }
        }
        for (target, extra) in adding where devices[target] != nil {
            devices[target]?.count += extra.count
            devices[target]?.bytes += extra.bytes
            guard target.accountId != senderId else { continue }
            let key = ShareKey(address: target, senderId: senderId)
            shares[key, default: Room()].count += extra.count
            shares[key, default: Room()].bytes += extra.bytes
        }
    }

    // MARK: sends

    /// One transaction for the batch: the accounts, groups and device rows it needs are read once (device rows
    /// locked), every submission is validated against that state plus what the batch itself added, the valid
    /// ones are stored with one multi-row insert per table, and the nodes holding recipients are notified.
    func commit(_ submissions: [MessageSubmission], limits: RelayLimits) async throws -> [Result<SubmissionReceipt, RelayError>] {
        let called = DeliveryTrace.now()
        let (results, contacts, traced) = try await transaction { [self] connection in
            let bodyStarted = DeliveryTrace.now()
            var names = Set<String>()
            var groupIds = Set<UUID>()
            var accountIds = Set<Int64>()
            var senders = Set<Int64>()
            // What the whole batch could add to one device queue at most (each message addresses a device once).
            var batchRoom = Room()
            // Accounts whose devices get copies: their device rows are locked for update (sequence numbers, counters).
            var targetAccounts = Set<Int64>()
            for submission in submissions {
                // The sender's devices are read (and key-share locked when they get no copy) too: a send is stored
                // only if its device still exists, and a removal, which deletes the device row, waits for this
                // transaction or went first.
                accountIds.insert(submission.sender.accountId)
                senders.insert(submission.sender.accountId)
                switch submission.payload {
                case .direct(let recipient, let messages, let own):
                    names.insert(recipient)
                    if !own.isEmpty { targetAccounts.insert(submission.sender.accountId) }
                    for message in messages + own {
                        batchRoom.count += 1
                        batchRoom.bytes += message.content.count
                    }
                case .group(let groupId, _, let content, _):
                    groupIds.insert(groupId)
                    batchRoom.count += 1
                    batchRoom.bytes += content.count
                }
            }
            var idsByName: [String: Int64] = [:]
            if !names.isEmpty {
                for row in try await rows(connection, AccountIdsSQL.self, try Self.bindings(Array(names))) {
                    let (id, name) = try row.decode((Int64, String).self)
                    idsByName[name] = id
                    accountIds.insert(id)
                    targetAccounts.insert(id)
                }
            }
            var members: [UUID: [Int64]] = [:]
            var epochs: [UUID: Int64] = [:]
            if !groupIds.isEmpty {
                // The groups' rows are share-locked first (a membership change holds its group's row exclusively until
                // it commits), then the members are read by a statement of their own, which in READ COMMITTED sees
                // every change committed before the lock was granted: the version checked and the members the message
                // fans out to are those of one version, and no change of them commits before this transaction does.
                for row in try await rows(
                    connection, "SELECT id, epoch FROM chat_group WHERE id = ANY(\(Array(groupIds))) ORDER BY id FOR SHARE")
                {
                    let (groupId, epoch) = try row.decode((UUID, Int64).self)
                    epochs[groupId] = epoch
                    members[groupId] = []
                }
                if !epochs.isEmpty {
                    for row in try await rows(
                        connection,
                        "SELECT group_id, account_id FROM group_member WHERE group_id = ANY(\(Array(epochs.keys)))")
                    {
                        let (groupId, member) = try row.decode((UUID, Int64).self)
                        members[groupId, default: []].append(member)
                        accountIds.insert(member)
                        targetAccounts.insert(member)
                    }
                }
            }
            var devices: [DeviceAddress: LockedDevice] = [:]
            var accountNames: [Int64: String] = [:]
            var active: [Int64: [UInt32: UInt32]] = [:]
            if !accountIds.isEmpty {
                // Devices that get copies: locked for update, in key order. Senders' devices that get none: locked
                // only against their deletion (FOR KEY SHARE), so that sends to them, from any node, do not wait
                // for this transaction. A queue's size is its counters less what acks released (not locked: see
                // relay-pg-v7-queue-release).
                let sharedOnly = Array(accountIds.subtracting(targetAccounts))
                for row in try await rows(connection, LockDevicesSQL.self, try Self.bindings(Array(targetAccounts), sharedOnly)) {
                    let (accountId, deviceId, registrationId, state, count, bytes, seq, name, target) =
                        try row.decode((Int64, Int64, Int64, String, Int64, Int64, Int64, String, Bool).self)
                    let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
                    if state == "active" {
                        active[accountId, default: [:]][address.deviceId] = UInt32(truncatingIfNeeded: registrationId)
                    }
                    if target {
                        devices[address] = LockedDevice(
                            registrationId: UInt32(truncatingIfNeeded: registrationId), active: state == "active", count: Int(count),
                            bytes: Int(bytes), seq: seq)
                    }
                    accountNames[accountId] = name
                }
            }
            var shares = try await loadShares(
                connection, candidates: Self.shareCandidates(devices, adding: batchRoom, limits: limits), senders: senders)
            var contacts = Set<ContactPair>()

            var random = RandomPool()
            var copies: [Copy] = []
            var results: [Result<SubmissionReceipt, RelayError>] = []
            results.reserveCapacity(submissions.count)
            // Per submission: its copies, so that receipts can be built once sequence numbers are assigned.
            var planned: [(index: Int, copies: Range<Int>)] = []
            for (index, submission) in submissions.enumerated() {
                do {
                    let (plan, contact) = try Self.plan(
                        submission, idsByName: idsByName, members: members, epochs: epochs, active: active, devices: &devices,
                        shares: &shares, names: accountNames, limits: limits)
                    if let contact { contacts.insert(contact) }
                    let first = copies.count
                    for (type, content, targets) in plan {
                        let (kind, conversation, groupId) = Self.conversation(of: submission)
                        copies.append(
                            Copy(
                                id: MessageID.make(unixMillis: submission.serverTimestamp, using: &random), kind: kind,
                                senderId: submission.sender.accountId, senderAccount: submission.sender.account, senderDevice: submission.sender.deviceId,
                                conversation: conversation, groupId: groupId, type: type, content: content,
                                serverTimestamp: submission.serverTimestamp, clientTimestamp: submission.clientTimestamp,
                                expiresAt: submission.expiresAt, targets: targets, receivedAt: submission.receivedAt))
                    }
                    planned.append((index, first..<copies.count))
                    results.append(.failure(.internalError))  // replaced below
                } catch let error as RelayError {
                    results.append(.failure(error))
                }
            }
            var announced: [(DeviceAddress, Int64, UInt64)] = []
            let seqs = try await insertCopies(connection, copies, devices: &devices, announced: &announced)
            try await recordContacts(connection, contacts)
            for (index, range) in planned {
                var ids: [UUID] = []
                var recipients: [DeviceAddress] = []
                var deliveries: [Delivery] = []
                for copyIndex in range {
                    let copy = copies[copyIndex]
                    let envelope = copy.envelope
                    ids.append(copy.id)
                    recipients.append(contentsOf: copy.targets)
                    for (target, seq) in zip(copy.targets, seqs[copyIndex]) {
                        deliveries.append(
                            Delivery(address: target, queued: QueuedEnvelope(seq: seq, envelope: envelope, previousSeq: seq - 1)))
                    }
                }
                results[index] = .success(
                    SubmissionReceipt(
                        serverTimestamp: submissions[index].serverTimestamp, ids: ids, recipients: recipients,
                        deliveries: deliveries))
            }
            let written = DeliveryTrace.now()
            return (results, contacts, (bodyStarted, written, announced))
        }
        knownContacts.insert(contacts)
        if DeliveryTrace.isEnabled {
            let end = DeliveryTrace.clock()
            DeliveryTrace.line("B \(called) \(traced.0) \(traced.1) \(end) \(submissions.count)")
            for (address, seq, receivedAt) in traced.2 {
                DeliveryTrace.line("S \(DeliveryTrace.id(address, seq)) \(receivedAt) \(called) \(end)")
            }
        }
        return results
    }

    /// Account ids by name.
    enum AccountIdsSQL: PreparedSQL {
        static let name = "parley_account_ids"
        static let sql = "SELECT id, name FROM account WHERE name = ANY($1)"
    }

    /// A send batch's device rows: the devices that get copies (`$1`, their accounts) locked for update, in key order;
    /// the senders' other devices (`$2`) locked only against their deletion. Queue sizes less what acks released.
    enum LockDevicesSQL: PreparedSQL {
        static let name = "parley_lock_devices"
        static let sql = """
            WITH targets AS (
                SELECT d.account_id, d.device_id, d.registration_id, d.state, d.queue_count, d.queue_bytes, d.queue_seq
                FROM device d WHERE d.account_id = ANY($1)
                ORDER BY d.account_id, d.device_id FOR NO KEY UPDATE OF d
            ), senders AS (
                SELECT d.account_id, d.device_id, d.registration_id, d.state, d.queue_count, d.queue_bytes, d.queue_seq
                FROM device d WHERE d.account_id = ANY($2)
                ORDER BY d.account_id, d.device_id FOR KEY SHARE OF d
            )
            SELECT x.account_id, x.device_id, x.registration_id, x.state, x.queue_count - COALESCE(r.count, 0),
                x.queue_bytes - COALESCE(r.bytes, 0), x.queue_seq, a.name, x.target
            FROM (SELECT *, TRUE AS target FROM targets UNION ALL SELECT *, FALSE FROM senders) x
            JOIN account a ON a.id = x.account_id
            LEFT JOIN queue_release r ON r.account_id = x.account_id AND r.device_id = x.device_id
            """
    }

    private static func conversation(of submission: MessageSubmission) -> (EnvelopeKind, String, UUID?) {
        switch submission.payload {
        case .direct(let recipient, _, _):
            (.direct, Envelope.directConversation(submission.sender.account, recipient), nil)
        case .group(let groupId, _, _, _):
            (.group, Envelope.groupConversation(groupId), groupId)
        }
    }

    /// The copies of one submission (type, ciphertext, target devices) and the contact pair a 1:1 message makes,
    /// validated like the SQLite store does: the sending device still exists (401), device sets (409), registration
    /// ids (410), membership (403), queue room and the sender's share of it (507) including what earlier
    /// submissions of the batch added (recorded in `devices` and `shares` once the submission is accepted).
    private static func plan(
        _ submission: MessageSubmission, idsByName: [String: Int64], members: [UUID: [Int64]], epochs: [UUID: Int64],
        active: [Int64: [UInt32: UInt32]], devices: inout [DeviceAddress: LockedDevice], shares: inout [ShareKey: Room],
        names: [Int64: String], limits: RelayLimits
    ) throws(RelayError) -> ([(Int, Data, [DeviceAddress])], ContactPair?) {
        let sender = submission.sender
        guard active[sender.accountId]?[sender.deviceId] != nil else { throw .unauthorized }
        var copies: [(Int, Data, [DeviceAddress])] = []
        var contact: ContactPair?
        switch submission.payload {
        case .direct(let recipient, let messages, let own):
            guard let recipientId = idsByName[recipient] else { throw .notFound("unknown account") }
            let isSelf = recipientId == sender.accountId
            if !isSelf { contact = ContactPair(from: sender.accountId, to: recipientId) }
            var recipientDevices = active[recipientId] ?? [:]
            if isSelf {
                recipientDevices[sender.deviceId] = nil
                guard own.isEmpty else { throw .invalidField("ownDeviceMessages must be empty when sending to yourself") }
            }
            try DeviceSetCheck.check(messages, against: recipientDevices, account: recipient)
            if !isSelf {
                var ownDevices = active[sender.accountId] ?? [:]
                ownDevices[sender.deviceId] = nil
                try DeviceSetCheck.check(own, against: ownDevices, account: sender.account)
            }
            for message in messages {
                copies.append((message.type, message.content, [DeviceAddress(accountId: recipientId, deviceId: message.deviceId)]))
            }
            for message in own {
                copies.append((message.type, message.content, [DeviceAddress(accountId: sender.accountId, deviceId: message.deviceId)]))
            }
            guard !copies.isEmpty else { throw .invalidField("message addresses no device") }
        case .group(let groupId, let type, let content, let epoch):
            guard let memberIds = members[groupId], let current = epochs[groupId] else { throw .notFound("unknown group") }
            guard memberIds.contains(sender.accountId) else { throw .forbidden("not a member of this group") }
            if let epoch, epoch != current { throw .groupChanged(current: current) }
            var targets: [DeviceAddress] = []
            for accountId in memberIds.sorted() {
                for deviceId in (active[accountId] ?? [:]).keys.sorted() {
                    let address = DeviceAddress(accountId: accountId, deviceId: deviceId)
                    if address != sender.address { targets.append(address) }
                }
            }
            copies.append((type, content, targets))
        }
        var adding: [DeviceAddress: Room] = [:]
        for (_, content, targets) in copies {
            for target in targets {
                adding[target, default: Room()].count += 1
                adding[target, default: Room()].bytes += content.count
            }
        }
        try checkRoom(adding, senderId: sender.accountId, devices: &devices, shares: &shares, names: names, limits: limits)
        return (copies, contact)
    }

    /// Stores copies (each ciphertext once, one queue entry per target) with one multi-row insert per table,
    /// advances the targets' counters and sequence numbers (their rows must be locked, in `devices`), and
    /// notifies the nodes the targets are connected to. Returns each copy's sequence numbers, in target order.
    func insertCopies(_ connection: PostgresConnection, _ copies: [Copy], devices: inout [DeviceAddress: LockedDevice]) async throws -> [[Int64]] {
        var announced: [(DeviceAddress, Int64, UInt64)] = []
        return try await insertCopies(connection, copies, devices: &devices, announced: &announced)
    }

    /// `insertCopies`, also collecting, while `DeliveryTrace` is on, the entries announced to other nodes (device,
    /// sequence number, when its submission was made).
    func insertCopies(
        _ connection: PostgresConnection, _ copies: [Copy], devices: inout [DeviceAddress: LockedDevice],
        announced: inout [(DeviceAddress, Int64, UInt64)]
    ) async throws -> [[Int64]] {
        guard !copies.isEmpty else { return [] }
        var messageIds: [UUID] = []
        var kinds: [String] = []
        var senderAccounts: [String] = []
        var senderDevices: [Int64] = []
        var conversations: [String] = []
        var groupIds: [UUID] = []
        var types: [Int32] = []
        var contents: [ByteBuffer] = []
        var serverTimestamps: [Int64] = []
        var clientTimestamps: [Int64] = []
        var referenceCounts: [Int32] = []
        var entryAccounts: [Int64] = []
        var entryDevices: [Int64] = []
        var entrySeqs: [Int64] = []
        var entryMessages: [UUID] = []
        var entrySizes: [Int32] = []
        var entryExpiries: [Int64] = []
        var entrySenders: [Int64] = []
        var entryReceived: [UInt64] = []
        var first: [DeviceAddress: Int64] = [:]
        var seqs: [[Int64]] = []
        seqs.reserveCapacity(copies.count)
        for copy in copies where !copy.targets.isEmpty {
            messageIds.append(copy.id)
            kinds.append(copy.kind.rawValue)
            senderAccounts.append(copy.senderAccount)
            senderDevices.append(Int64(copy.senderDevice))
            conversations.append(copy.conversation)
            groupIds.append(copy.groupId ?? Self.noGroup)
            types.append(Int32(truncatingIfNeeded: copy.type))
            contents.append(ByteBuffer(bytes: copy.content))
            serverTimestamps.append(copy.serverTimestamp)
            clientTimestamps.append(copy.clientTimestamp ?? Self.noClientTimestamp)
            referenceCounts.append(Int32(copy.targets.count))
        }
        for copy in copies {
            var copySeqs: [Int64] = []
            copySeqs.reserveCapacity(copy.targets.count)
            for target in copy.targets {
                guard var device = devices[target] else {
                    // Not locked by the caller: a programming error, refuse the whole batch.
                    throw PostgresStoreInternalError.deviceNotLocked
                }
                device.seq += 1
                if first[target] == nil {
                    first[target] = device.seq
                }
                devices[target] = device
                copySeqs.append(device.seq)
                entryAccounts.append(target.accountId)
                entryDevices.append(Int64(target.deviceId))
                entrySeqs.append(device.seq)
                entryMessages.append(copy.id)
                entrySizes.append(Int32(copy.content.count))
                entryExpiries.append(copy.expiresAt)
                entrySenders.append(copy.senderId)
                if DeliveryTrace.isEnabled { entryReceived.append(copy.receivedAt) }
            }
            seqs.append(copySeqs)
        }
        guard !messageIds.isEmpty else { return seqs }
        // Per-sender shares (an account's copies to its own devices are not anyone's share).
        var shareAdded: [ShareKey: Room] = [:]
        for (index, account) in entryAccounts.enumerated() where entrySenders[index] != account {
            let key = ShareKey(
                address: DeviceAddress(accountId: account, deviceId: UInt32(truncatingIfNeeded: entryDevices[index])),
                senderId: entrySenders[index])
            shareAdded[key, default: Room()].count += 1
            shareAdded[key, default: Room()].bytes += Int(entrySizes[index])
        }
        let shareKeys = Array(shareAdded.keys)
        // Counters: the change per device since the rows were read is what the batch added.
        var added: [DeviceAddress: (count: Int64, bytes: Int64)] = [:]
        for (index, account) in entryAccounts.enumerated() {
            let address = DeviceAddress(accountId: account, deviceId: UInt32(truncatingIfNeeded: entryDevices[index]))
            added[address, default: (0, 0)].count += 1
            added[address, default: (0, 0)].bytes += Int64(entrySizes[index])
        }
        let targets = Array(added.keys)
        // Every write of the batch in one statement (each data-modifying WITH runs once and to completion, whether or
        // not the query reads it), which also answers where the targets have a session on another node: one round
        // trip while the devices' rows are locked, not five.
        var remote: [DeviceAddress: Int64] = [:]
        for row in try await rows(
            connection, StoreCopiesSQL.self,
            try Self.bindings(
                messageIds, kinds, senderAccounts, senderDevices, conversations, groupIds, types, contents, serverTimestamps,
                clientTimestamps, referenceCounts, Self.noGroup, Self.noClientTimestamp,
                entryAccounts, entryDevices, entrySeqs, entryMessages, entrySizes, entryExpiries, entrySenders,
                shareKeys.map(\.address.accountId), shareKeys.map { Int64($0.address.deviceId) }, shareKeys.map(\.senderId),
                shareKeys.map { Int64(shareAdded[$0]?.count ?? 0) }, shareKeys.map { Int64(shareAdded[$0]?.bytes ?? 0) },
                targets.map(\.accountId), targets.map { Int64($0.deviceId) }, targets.map { added[$0]?.count ?? 0 },
                targets.map { added[$0]?.bytes ?? 0 }, targets.map { devices[$0]?.seq ?? 0 }, nodeId))
        {
            let (accountId, deviceId, node) = try row.decode((Int64, Int64, Int64).self)
            remote[DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))] = node
        }
        try await notifyNodes(connection, remote, entries: zip(entryAccounts.indices, entryAccounts).map { index, account in
            (DeviceAddress(accountId: account, deviceId: UInt32(truncatingIfNeeded: entryDevices[index])), entrySeqs[index])
        })
        if DeliveryTrace.isEnabled, !remote.isEmpty {
            for (index, account) in entryAccounts.enumerated() {
                let address = DeviceAddress(accountId: account, deviceId: UInt32(truncatingIfNeeded: entryDevices[index]))
                if remote[address] != nil { announced.append((address, entrySeqs[index], entryReceived[index])) }
            }
        }
        return seqs
    }

    /// Every write of a send batch (messages `$1`-`$11` with the stand-ins for NULL `$12`, `$13`; queue entries
    /// `$14`-`$20`; shares added `$21`-`$25`; the targets' counters and last sequence numbers `$26`-`$30`), answering
    /// which targets have a session on a node other than this one (`$31`).
    enum StoreCopiesSQL: PreparedSQL {
        static let name = "parley_store_copies"
        static let sql = """
            WITH stored_messages AS (
                INSERT INTO message (id, kind, sender_account, sender_device, conversation, group_id, type, content, server_ts,
                    client_ts, ref_count)
                SELECT i, k, sa, sd, c, NULLIF(g, $12), t, b, st, NULLIF(ct, $13), r
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::uuid[], $7::int[], $8::bytea[],
                    $9::bigint[], $10::bigint[], $11::int[]) AS m(i, k, sa, sd, c, g, t, b, st, ct, r)
            ), stored_entries AS (
                INSERT INTO queue_entry (account_id, device_id, seq, message_id, size, expires_at, sender_id)
                SELECT * FROM unnest($14::bigint[], $15::bigint[], $16::bigint[], $17::uuid[], $18::int[], $19::bigint[],
                    $20::bigint[])
            ), stored_shares AS (
                INSERT INTO queue_share (account_id, device_id, sender_id, count, bytes)
                SELECT * FROM unnest($21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[])
                ON CONFLICT (account_id, device_id, sender_id)
                DO UPDATE SET count = queue_share.count + excluded.count, bytes = queue_share.bytes + excluded.bytes
            ), counters AS (
                UPDATE device d SET queue_count = d.queue_count + t.c, queue_bytes = d.queue_bytes + t.b, queue_seq = t.s
                FROM unnest($26::bigint[], $27::bigint[], $28::bigint[], $29::bigint[], $30::bigint[]) AS t(a, v, c, b, s)
                WHERE d.account_id = t.a AND d.device_id = t.v
            )
            SELECT c.account_id, c.device_id, c.node_id FROM device_connection c
            JOIN unnest($26::bigint[], $27::bigint[]) AS t(a, v) ON c.account_id = t.a AND c.device_id = t.v
            WHERE c.node_id <> $31
            """
    }

    /// Tells the other nodes that have a session of these devices (`remote`: device -> its node) which entries were
    /// committed (ids only: `d <account>.<device>.<seq> ...`). Delivered by PostgreSQL when (and only if) this
    /// transaction commits.
    func notifyNodes(_ connection: PostgresConnection, _ remote: [DeviceAddress: Int64], entries: [(DeviceAddress, Int64)]) async throws {
        guard !remote.isEmpty else { return }
        var byNode: [Int64: [String]] = [:]
        for (address, seq) in entries {
            guard let node = remote[address] else { continue }
            byNode[node, default: []].append("\(address.accountId).\(address.deviceId).\(seq)")
        }
        var channels: [String] = []
        var payloads: [String] = []
        for (node, items) in byNode {
            for payload in ClusterMessage.pack("d", items) {
                channels.append(PostgresCluster.channel(schema: location.schema, node: node))
                payloads.append(payload)
            }
        }
        try await rows(connection, "SELECT pg_notify(c, p) FROM unnest(\(channels), \(payloads)) AS t(c, p)")
    }

    // MARK: reading queues

    static let envelopeColumns = """
        q.seq, m.id, m.kind, m.server_ts, m.client_ts, m.sender_account, m.sender_device, m.conversation, m.group_id,
        m.type, m.content
        """

    /// A page of a device's queue after a sequence number.
    enum PendingSQL: PreparedSQL {
        static let name = "parley_pending"
        static let sql = """
            SELECT \(PostgresRelayStore.envelopeColumns)
            FROM queue_entry q JOIN message m ON m.id = q.message_id
            WHERE q.account_id = $1 AND q.device_id = $2 AND q.seq > $3 ORDER BY q.seq LIMIT $4
            """
    }

    /// The entries other nodes announced, by device and sequence number.
    enum EntriesSQL: PreparedSQL {
        static let name = "parley_entries"
        static let sql = """
            SELECT q.account_id, q.device_id, \(PostgresRelayStore.envelopeColumns)
            FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(a, v, s)
            JOIN queue_entry q ON q.account_id = t.a AND q.device_id = t.v AND q.seq = t.s
            JOIN message m ON m.id = q.message_id
            ORDER BY q.account_id, q.device_id, q.seq
            """
    }

    static func queued(_ row: PostgresRow) throws -> QueuedEnvelope {
        let columns = try row.decode(
            (Int64, UUID, String, Int64, Int64?, String, Int64, String, UUID?, Int32, Data).self)
        let (seq, id, kind, serverTs, clientTs, senderAccount, senderDevice, conversation, groupId, type, content) = columns
        let envelope = Envelope(
            id: id, kind: EnvelopeKind(rawValue: kind) ?? .direct, serverTimestamp: serverTs, clientTimestamp: clientTs,
            senderAccount: senderAccount, senderDevice: UInt32(truncatingIfNeeded: senderDevice), conversation: conversation,
            groupId: groupId, type: Int(type), content: content)
        return QueuedEnvelope(seq: seq, envelope: envelope, previousSeq: seq - 1)
    }

    func pending(_ address: DeviceAddress, afterSeq: Int64, limit: Int, maxBytes: Int) async throws -> [QueuedEnvelope] {
        try await read { [self] connection in
            // Once the page holds `maxBytes` of ciphertext the rest of the rows is not decoded (`limit` bounds what
            // the statement returns). Through `rows`: no wait outlives the connection.
            let stream = try await rows(
                connection, PendingSQL.self, try Self.bindings(address.accountId, Int64(address.deviceId), afterSeq, Int64(limit)))
            var page: [QueuedEnvelope] = []
            var bytes = 0
            for row in stream {
                guard bytes < maxBytes else { continue }
                let queued = try Self.queued(row)
                bytes += queued.envelope.content.count
                page.append(queued)
            }
            return page
        }
    }

    /// The entries other nodes announced (`notifyNodes`), those still queued, oldest first per device.
    func entries(_ wanted: [(DeviceAddress, Int64)]) async throws -> [Delivery] {
        guard !wanted.isEmpty else { return [] }
        return try await read { [self] connection in
            try await rows(
                connection, EntriesSQL.self,
                try Self.bindings(wanted.map(\.0.accountId), wanted.map { Int64($0.0.deviceId) }, wanted.map(\.1))
            ).map { row in
                let (accountId, deviceId) = try row.decode((Int64, Int64).self)
                let rest = try Self.queuedSkippingTwo(row)
                return Delivery(address: DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId)), queued: rest)
            }
        }
    }

    private static func queuedSkippingTwo(_ row: PostgresRow) throws -> QueuedEnvelope {
        let columns = try row.decode(
            (Int64, Int64, Int64, UUID, String, Int64, Int64?, String, Int64, String, UUID?, Int32, Data).self)
        let (_, _, seq, id, kind, serverTs, clientTs, senderAccount, senderDevice, conversation, groupId, type, content) = columns
        let envelope = Envelope(
            id: id, kind: EnvelopeKind(rawValue: kind) ?? .direct, serverTimestamp: serverTs, clientTimestamp: clientTs,
            senderAccount: senderAccount, senderDevice: UInt32(truncatingIfNeeded: senderDevice), conversation: conversation,
            groupId: groupId, type: Int(type), content: content)
        return QueuedEnvelope(seq: seq, envelope: envelope, previousSeq: seq - 1)
    }

    static func bindings<each Value: PostgresEncodable>(_ values: repeat each Value) throws -> PostgresBindings {
        var bindings = PostgresBindings()
        repeat try bindings.append(each values)
        return bindings
    }

    // MARK: acks and expiry

    func ack(_ batch: [(DeviceAddress, [UUID])]) async throws -> [Int] {
        var accounts: [Int64] = []
        var deviceIds: [Int64] = []
        var messageIds: [UUID] = []
        for (address, ids) in batch {
            for id in Set(ids) {
                accounts.append(address.accountId)
                deviceIds.append(Int64(address.deviceId))
                messageIds.append(id)
            }
        }
        guard !messageIds.isEmpty else { return batch.map { _ in 0 } }
        // One statement (`parley_ack`, migrations relay-pg-v5-ack-function and relay-pg-v7-queue-release): no
        // device row is locked, the released room is added to rows no send locks.
        let removed = try await statement { [self, accounts, deviceIds, messageIds] connection in
            var removed: [(DeviceAddress, UUID)] = []
            for row in try await rows(
                connection,
                PostgresQuery(
                    unsafeSQL: "SELECT removed_account, removed_device, removed_message FROM parley_ack($1, $2, $3)",
                    binds: try Self.bindings(accounts, deviceIds, messageIds)))
            {
                let (accountId, deviceId, messageId) = try row.decode((Int64, Int64, UUID).self)
                removed.append((DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId)), messageId))
            }
            return removed
        }
        // Per batch entry: how many of its ids were removed (an address may appear in several entries).
        var removedIds: [DeviceAddress: Set<UUID>] = [:]
        for (address, id) in removed { removedIds[address, default: []].insert(id) }
        return batch.map { address, ids in
            guard let gone = removedIds[address] else { return 0 }
            var counted = 0
            for id in Set(ids) where gone.contains(id) { counted += 1 }
            removedIds[address]?.subtract(ids)
            return counted
        }
    }

    /// Runs a `DELETE FROM queue_entry ... RETURNING account_id, device_id, message_id, size, sender_id` (the
    /// devices' rows already locked), then releases the messages and decrements the devices' counters and the
    /// senders' shares. Returns what was removed.
    private func removeEntries(_ connection: PostgresConnection, _ delete: PostgresQuery) async throws -> [(DeviceAddress, UUID)] {
        var removed: [(DeviceAddress, UUID)] = []
        var counters: [DeviceAddress: (count: Int64, bytes: Int64)] = [:]
        var shares: [ShareKey: Room] = [:]
        for row in try await rows(connection, delete) {
            let (accountId, deviceId, messageId, size, senderId) = try row.decode((Int64, Int64, UUID, Int32, Int64?).self)
            let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
            removed.append((address, messageId))
            counters[address, default: (0, 0)].count += 1
            counters[address, default: (0, 0)].bytes += Int64(size)
            if let senderId, senderId != accountId {
                shares[ShareKey(address: address, senderId: senderId), default: Room()].count += 1
                shares[ShareKey(address: address, senderId: senderId), default: Room()].bytes += Int(size)
            }
        }
        guard !removed.isEmpty else { return [] }
        try await releaseMessages(connection, removed.map(\.1))
        try await releaseShares(connection, shares)
        let addresses = Array(counters.keys)
        try await rows(
            connection,
            """
            UPDATE device d SET queue_count = d.queue_count - t.c, queue_bytes = d.queue_bytes - t.b
            FROM unnest(\(addresses.map(\.accountId)), \(addresses.map { Int64($0.deviceId) }),
                \(addresses.map { counters[$0]?.count ?? 0 }), \(addresses.map { counters[$0]?.bytes ?? 0 })) AS t(a, v, c, b)
            WHERE d.account_id = t.a AND d.device_id = t.v
            """)
        return removed
    }

    /// Takes released entries off their senders' shares of device queues (the devices' rows locked); a share that
    /// reaches zero goes.
    private func releaseShares(_ connection: PostgresConnection, _ shares: [ShareKey: Room]) async throws {
        guard !shares.isEmpty else { return }
        let keys = Array(shares.keys)
        let accounts = keys.map(\.address.accountId)
        let deviceIds = keys.map { Int64($0.address.deviceId) }
        let senders = keys.map(\.senderId)
        try await rows(
            connection,
            """
            UPDATE queue_share s SET count = s.count - t.c, bytes = s.bytes - t.b
            FROM unnest(\(accounts), \(deviceIds), \(senders), \(keys.map { Int64(shares[$0]?.count ?? 0) }),
                \(keys.map { Int64(shares[$0]?.bytes ?? 0) })) AS t(a, v, s, c, b)
            WHERE s.account_id = t.a AND s.device_id = t.v AND s.sender_id = t.s
            """)
        try await rows(
            connection,
            """
            DELETE FROM queue_share s USING unnest(\(accounts), \(deviceIds), \(senders)) AS t(a, v, s)
            WHERE s.account_id = t.a AND s.device_id = t.v AND s.sender_id = t.s AND s.count <= 0
            """)
    }

    /// Drops one reference per id (an id may repeat); deletes the messages no queue refers to any more. The
    /// message rows are locked in id order first: two nodes releasing copies of one group message take turns,
    /// and each sees the other's decrement.
    func releaseMessages(_ connection: PostgresConnection, _ ids: [UUID]) async throws {
        guard !ids.isEmpty else { return }
        var references: [UUID: Int32] = [:]
        for id in ids { references[id, default: 0] += 1 }
        let unique = Array(references.keys)
        var delete: [UUID] = []
        var decrement: [UUID] = []
        for row in try await rows(
            connection, "SELECT id, ref_count FROM message WHERE id = ANY(\(unique)) ORDER BY id FOR UPDATE")
        {
            let (id, count) = try row.decode((UUID, Int32).self)
            if count <= references[id] ?? 0 { delete.append(id) } else { decrement.append(id) }
        }
        if !delete.isEmpty {
            try await rows(connection, "DELETE FROM message WHERE id = ANY(\(delete))")
        }
        if !decrement.isEmpty {
            try await rows(
                connection,
                """
                UPDATE message m SET ref_count = m.ref_count - t.n
                FROM unnest(\(decrement), \(decrement.map { references[$0] ?? 0 })) AS t(i, n) WHERE m.id = t.i
                """)
        }
    }

    func deleteExpired(now: Int64) async throws -> ExpiryResult {
        try await transaction { [self] connection in
            // One node sweeps at a time (the others find the lock taken and skip this round).
            let locked = try await rows(connection, "SELECT pg_try_advisory_xact_lock(hashtext(\("parley-relay-expiry:" + location.schema)))")
                .first?.decode(Bool.self) ?? false
            guard locked else { return ExpiryResult(expiredMessages: 0, affected: []) }
            var accounts: [Int64] = []
            var deviceIds: [Int64] = []
            var seqs: [Int64] = []
            for row in try await rows(
                connection,
                """
                SELECT account_id, device_id, seq FROM queue_entry WHERE expires_at <= \(now)
                ORDER BY expires_at LIMIT \(Int64(RelayLimits.expiryBatchSize))
                """)
            {
                let (accountId, deviceId, seq) = try row.decode((Int64, Int64, Int64).self)
                accounts.append(accountId)
                deviceIds.append(deviceId)
                seqs.append(seq)
            }
            var affected = Set<DeviceAddress>()
            var expired = 0
            if !seqs.isEmpty {
                let addresses = zip(accounts, deviceIds).map { DeviceAddress(accountId: $0, deviceId: UInt32(truncatingIfNeeded: $1)) }
                try await lockDevices(connection, addresses)
                let removed = try await removeEntries(
                    connection,
                    PostgresQuery(
                        unsafeSQL: """
                            DELETE FROM queue_entry q USING unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(a, v, s)
                            WHERE q.account_id = t.a AND q.device_id = t.v AND q.seq = t.s
                            RETURNING q.account_id, q.device_id, q.message_id, q.size, q.sender_id
                            """,
                        binds: try Self.bindings(accounts, deviceIds, seqs)))
                expired = removed.count
                for (address, _) in removed { affected.insert(address) }
            }
            try await foldReleases(connection)
            try await deleteStaleLinks(connection, now: now)
            return ExpiryResult(expiredMessages: expired, affected: Array(affected))
        }
    }

    /// Folds what acks released (`queue_release`, `queue_share_release`) back into the devices' counters and the
    /// senders' shares, for up to `RelayLimits.expiryBatchSize` devices per sweep, under the devices' locks; shares
    /// that reach zero go. Without it both tables would keep a row for every queue and share ever acked. Release rows
    /// are locked in the order `parley_ack` writes them (shares first, each in key order), so the two never wait for
    /// each other in a cycle.
    private func foldReleases(_ connection: PostgresConnection) async throws {
        var accounts: [Int64] = []
        var deviceIds: [Int64] = []
        for row in try await rows(
            connection,
            "SELECT account_id, device_id FROM queue_release ORDER BY account_id, device_id LIMIT \(Int64(RelayLimits.expiryBatchSize))")
        {
            let (accountId, deviceId) = try row.decode((Int64, Int64).self)
            accounts.append(accountId)
            deviceIds.append(deviceId)
        }
        guard !accounts.isEmpty else { return }
        try await lockDevices(connection, zip(accounts, deviceIds).map { DeviceAddress(accountId: $0, deviceId: UInt32(truncatingIfNeeded: $1)) })
        try await rows(
            connection,
            """
            SELECT 1 FROM queue_share_release q JOIN unnest(\(accounts), \(deviceIds)) AS t(a, v)
                ON q.account_id = t.a AND q.device_id = t.v
            ORDER BY q.account_id, q.device_id, q.sender_id FOR UPDATE OF q
            """)
        try await rows(
            connection,
            """
            SELECT 1 FROM queue_release q JOIN unnest(\(accounts), \(deviceIds)) AS t(a, v)
                ON q.account_id = t.a AND q.device_id = t.v
            ORDER BY q.account_id, q.device_id FOR UPDATE OF q
            """)
        try await rows(
            connection,
            """
            WITH r AS (
                DELETE FROM queue_share_release q USING unnest(\(accounts), \(deviceIds)) AS t(a, v)
                WHERE q.account_id = t.a AND q.device_id = t.v
                RETURNING q.account_id, q.device_id, q.sender_id, q.count, q.bytes)
            UPDATE queue_share s SET count = s.count - r.count, bytes = s.bytes - r.bytes
            FROM r WHERE s.account_id = r.account_id AND s.device_id = r.device_id AND s.sender_id = r.sender_id
            """)
        try await rows(
            connection,
            """
            WITH r AS (
                DELETE FROM queue_release q USING unnest(\(accounts), \(deviceIds)) AS t(a, v)
                WHERE q.account_id = t.a AND q.device_id = t.v
                RETURNING q.account_id, q.device_id, q.count, q.bytes)
            UPDATE device d SET queue_count = d.queue_count - r.count, queue_bytes = d.queue_bytes - r.bytes
            FROM r WHERE d.account_id = r.account_id AND d.device_id = r.device_id
            """)
        try await rows(
            connection,
            """
            DELETE FROM queue_share s USING unnest(\(accounts), \(deviceIds)) AS t(a, v)
            WHERE s.account_id = t.a AND s.device_id = t.v AND s.count <= 0
            """)
    }

    func totalQueued() async throws -> Int {
        try await read { [self] connection in
            Int(
                try await rows(
                    connection,
                    """
                    SELECT (COALESCE((SELECT SUM(queue_count) FROM device), 0)
                        - COALESCE((SELECT SUM(count) FROM queue_release), 0))::BIGINT
                    """
                ).first?.decode(Int64.self) ?? 0)
        }
    }
}

/// A PostgreSQL store invariant did not hold (a bug, not bad input).
enum PostgresStoreInternalError: Error {
    /// A queue entry was about to be stored for a device whose row the transaction had not locked.
    case deviceNotLocked
}
