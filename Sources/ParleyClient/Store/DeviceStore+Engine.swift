import Foundation
import GRDB
import ParleyProtocol
import ParleyWire

/// This device's relay account: who it is on the relay and how it authenticates.
public struct LocalAccount: Sendable, Equatable {
    public let name: String
    public let deviceId: UInt32
    /// The device's relay credential (a secret: sealed at rest in a sealed store).
    public let credential: String
    /// `http(s)://host:port` of the relay.
    public let serverURL: String

    public init(name: String, deviceId: UInt32, credential: String, serverURL: String) {
        self.name = name
        self.deviceId = deviceId
        self.credential = credential
        self.serverURL = serverURL
    }

    public var address: ProtocolAddress { ProtocolAddress(name: name, deviceId: deviceId) }
    public var credentials: DeviceCredentials { DeviceCredentials(account: name, deviceId: deviceId, credential: credential) }
}

/// Where an outbox entry goes.
public enum OutboxDestination: Sendable, Equatable {
    /// Every device of an account (and this account's other devices).
    case direct(account: String)
    /// A group, through the sender key.
    case group(groupId: String)
}

/// One entry of the durable outbox: encoded content waiting for the relay's acknowledgement.
public struct OutboxEntry: Sendable, Equatable {
    public let id: Int64
    public let destination: OutboxDestination
    /// Padded content for the destination's devices.
    public let content: [UInt8]
    /// Padded content for this account's other devices (1:1 only; nil: the same as `content`).
    public let ownContent: [UInt8]?
    /// The history message this entry sends, if any (its status moves to `sent` on success).
    public let messageUid: String?
    /// The envelope's client timestamp: the DataMessage's timestamp, so that a peer's
    /// decryption-error report can name the message.
    public let clientTimestamp: Int64?
    public let attempts: Int
}

extension SealContext {
    static let localAccount = SealContext(table: "local_account", key: ["1"])
    static func outbox(_ id: Int64, own: Bool) -> SealContext { SealContext(table: "outbox", key: [String(id), own ? "own" : "peer"]) }
}

/// What the messaging engine keeps beyond the protocol stores and the history (schema
/// `client-v2`): the account, the outbox, processed envelopes, group members and who holds this
/// device's sender key.
extension DeviceStore {
    // MARK: account

    public func saveAccount(_ account: LocalAccount) throws(DeviceStoreError) {
        let sealed = try protection.protect(Array(account.credential.utf8), context: .localAccount)
        let now = clock()
        try write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO local_account (id, name, device_id, credential_sealed, server_url, created_at)
                    VALUES (1, ?, ?, ?, ?, ?)
                    """,
                arguments: [account.name, Int64(account.deviceId), sealed, account.serverURL, now])
        }
    }

    public func account() throws(DeviceStoreError) -> LocalAccount? {
        let protection = self.protection
        return try read { db throws -> LocalAccount? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM local_account WHERE id = 1") else { return nil }
            let key = "1"
            let sealed: Data = try row.value("credential_sealed", table: "local_account", key: key)
            let credential = try protection.reveal(sealed, context: .localAccount)
            guard let text = credential.withBytes({ String(validating: $0, as: UTF8.self) }) else {
                throw DeviceStoreError.corruptRow(table: "local_account", key: key, reason: "credential is not UTF-8")
            }
            return LocalAccount(
                name: try row.value("name", table: "local_account", key: key),
                deviceId: try row.uint32("device_id", table: "local_account", key: key),
                credential: text,
                serverURL: try row.value("server_url", table: "local_account", key: key))
        }
    }

    // MARK: outbox

    /// Adds an entry; entries are sent in insertion order.
    @discardableResult
    public func enqueueOutgoing(
        _ destination: OutboxDestination, content: [UInt8], ownContent: [UInt8]? = nil, messageUid: String? = nil,
        clientTimestamp: Int64? = nil
    ) throws(DeviceStoreError) -> Int64 {
        let protection = self.protection
        let now = clock()
        return try write { db throws -> Int64 in
            let (kind, target): (String, String) =
                switch destination {
                case .direct(let account): ("direct", account)
                case .group(let groupId): ("group", groupId)
                }
            try db.execute(
                sql: """
                    INSERT INTO outbox (destination_kind, destination, content_sealed, message_uid, client_timestamp, created_at)
                    VALUES (?, ?, x'', ?, ?, ?)
                    """,
                arguments: [kind, target, messageUid, clientTimestamp, now])
            let id = db.lastInsertedRowID
            let sealed = try protection.protect(content, context: .outbox(id, own: false))
            let ownSealed = try ownContent.map { try protection.protect($0, context: .outbox(id, own: true)) }
            try db.execute(
                sql: "UPDATE outbox SET content_sealed = ?, own_content_sealed = ? WHERE id = ?",
                arguments: [sealed, ownSealed, id])
            return id
        }
    }

    /// The oldest `limit` entries.
    public func outboxEntries(limit: Int = 100) throws(DeviceStoreError) -> [OutboxEntry] {
        let protection = self.protection
        return try read { db throws -> [OutboxEntry] in
            try Row.fetchAll(db, sql: "SELECT * FROM outbox ORDER BY id LIMIT ?", arguments: [limit]).map { row throws -> OutboxEntry in
                let id: Int64 = try row.value("id", table: "outbox", key: "?")
                let key = String(id)
                let kind: String = try row.value("destination_kind", table: "outbox", key: key)
                let target: String = try row.value("destination", table: "outbox", key: key)
                let sealed: Data = try row.value("content_sealed", table: "outbox", key: key)
                let ownSealed: Data? = try row.optionalValue("own_content_sealed", table: "outbox", key: key)
                return OutboxEntry(
                    id: id, destination: kind == "group" ? .group(groupId: target) : .direct(account: target),
                    content: try protection.reveal(sealed, context: .outbox(id, own: false)).copyBytes(),
                    ownContent: try ownSealed.map { try protection.reveal($0, context: .outbox(id, own: true)).copyBytes() },
                    messageUid: try row.optionalValue("message_uid", table: "outbox", key: key),
                    clientTimestamp: try row.optionalValue("client_timestamp", table: "outbox", key: key),
                    attempts: try row.value("attempts", table: "outbox", key: key))
            }
        }
    }

    public func outboxCount() throws(DeviceStoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0 }
    }

    public func removeOutgoing(id: Int64) throws(DeviceStoreError) {
        try write { db in try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [id]) }
    }

    public func recordOutboxFailure(id: Int64, reason: String) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", arguments: [reason, id])
        }
    }

    // MARK: processed envelopes

    public func isProcessed(envelope id: UUID) throws(DeviceStoreError) -> Bool {
        try read { db in
            try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM processed_envelope WHERE server_id = ?", arguments: [id]) ?? false
        }
    }

    public func markProcessed(envelope id: UUID) throws(DeviceStoreError) {
        let now = clock()
        try write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO processed_envelope (server_id, processed_at) VALUES (?, ?)", arguments: [id, now])
        }
    }

    /// How many envelope ids are recorded as processed (tests use it to see whether a sync did anything).
    public func processedEnvelopeCount() throws(DeviceStoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM processed_envelope") ?? 0 }
    }

    /// Forgets processed-envelope ids older than `before` (the relay's retention bounds redelivery).
    public func pruneProcessedEnvelopes(before: Int64) throws(DeviceStoreError) {
        try write { db in try db.execute(sql: "DELETE FROM processed_envelope WHERE processed_at < ?", arguments: [before]) }
    }

    // MARK: messages by sender-chosen id

    /// The message `uid` sent by `sender` (an account), if stored.
    public func message(uid: String, sender: String) throws(DeviceStoreError) -> MessageID? {
        try read { db in
            try Int64.fetchOne(
                db, sql: "SELECT id FROM message WHERE message_uid = ? AND sender_account = ?", arguments: [uid, sender]
            ).map(MessageID.init(rawValue:))
        }
    }

    /// The incoming message with sender-chosen id `uid`, whoever sent it.
    public func incomingMessage(uid: String) throws(DeviceStoreError) -> MessageID? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM message WHERE message_uid = ? AND outgoing = 0 LIMIT 1", arguments: [uid])
                .map(MessageID.init(rawValue:))
        }
    }

    /// The outgoing message of `conversation` sent at `sentAt` (a decryption-error report names
    /// the failed message by its timestamp).
    public func outgoingMessage(in conversation: ConversationID, sentAt: Int64) throws(DeviceStoreError) -> StoredMessage? {
        let id = try read { db in
            try Int64.fetchOne(
                db, sql: "SELECT id FROM message WHERE conversation_id = ? AND outgoing = 1 AND sent_at = ? ORDER BY id DESC LIMIT 1",
                arguments: [conversation.rawValue, sentAt])
        }
        return try id.flatMap { id throws(DeviceStoreError) in try message(id: MessageID(rawValue: id)) }
    }

    /// Incoming messages of `conversation` that `reader` (this account) has not marked read,
    /// oldest first. Local read state is a `read` status row whose recipient is the reader.
    public func unreadIncoming(in conversation: ConversationID, reader: String) throws(DeviceStoreError) -> [StoredMessage] {
        let ids = try read { db in
            try Int64.fetchAll(
                db,
                sql: """
                    SELECT id FROM message m WHERE conversation_id = ? AND outgoing = 0 AND undecryptable = 0 AND notice = 0
                      AND NOT EXISTS (SELECT 1 FROM message_status s WHERE s.message_id = m.id AND s.recipient_account = ?)
                    ORDER BY sort_at, id
                    """,
                arguments: [conversation.rawValue, reader])
        }
        var result: [StoredMessage] = []
        for id in ids {
            if let message = try message(id: MessageID(rawValue: id)) { result.append(message) }
        }
        return result
    }

    // MARK: groups

    public func setGroupMembers(_ members: [String], groupId: String) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM group_member WHERE group_id = ?", arguments: [groupId])
            for member in Set(members) {
                try db.execute(sql: "INSERT INTO group_member (group_id, account) VALUES (?, ?)", arguments: [groupId, member])
            }
        }
    }

    public func groupMembers(groupId: String) throws(DeviceStoreError) -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT account FROM group_member WHERE group_id = ? ORDER BY account", arguments: [groupId])
        }
    }

    /// Every contact's known device ids (one query), by account.
    public func contactDeviceIds() throws(DeviceStoreError) -> [String: [UInt32]] {
        try read { db in
            var result: [String: [UInt32]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT account, device_id FROM contact_device ORDER BY account, device_id") {
                result[row["account"] as String, default: []].append(UInt32(truncatingIfNeeded: row["device_id"] as Int64))
            }
            return result
        }
    }

        /// Devices known to hold this device's current sender key for `groupId`.
    public func senderKeyHolders(groupId: String) throws(DeviceStoreError) -> Set<ProtocolAddress> {
        try read { db in
            Set(
                try Row.fetchAll(db, sql: "SELECT account, device_id FROM sender_key_shared WHERE group_id = ?", arguments: [groupId])
                    .map { row in ProtocolAddress(name: row["account"], deviceId: UInt32(truncatingIfNeeded: row["device_id"] as Int64)) })
        }
    }

    public func addSenderKeyHolders(_ holders: [ProtocolAddress], groupId: String) throws(DeviceStoreError) {
        try write { db in
            for holder in holders {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO sender_key_shared (group_id, account, device_id) VALUES (?, ?, ?)",
                    arguments: [groupId, holder.name, Int64(holder.deviceId)])
            }
        }
    }

    public func removeSenderKeyHolder(_ holder: ProtocolAddress, groupId: String) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "DELETE FROM sender_key_shared WHERE group_id = ? AND account = ? AND device_id = ?",
                arguments: [groupId, holder.name, Int64(holder.deviceId)])
        }
    }

    /// Starts a new sender key for this device in `groupId`: the old one is deleted and nobody
    /// holds the next one yet (after a member left or was removed).
    public func rotateOwnSenderKey(groupId: String, own: ProtocolAddress) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "DELETE FROM sender_key WHERE group_id = ? AND sender_name = ? AND sender_device_id = ?",
                arguments: [groupId, own.name, Int64(own.deviceId)])
            try keyRowDeleted(db, .senderKey(groupId, own.name, own.deviceId))
            try db.execute(sql: "DELETE FROM sender_key_shared WHERE group_id = ?", arguments: [groupId])
        }
    }
}
