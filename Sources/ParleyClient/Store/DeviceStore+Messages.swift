import Foundation
import GRDB
import ParleyProtocol

/// Message history (`message`, `message_status`), kept until deleted explicitly. Bodies are
/// sealed in a sealed store; everything else (who, when, status) is metadata in the clear.
extension DeviceStore {
    public static let maxPageSize = 1000

    /// Adds a message. A message whose `serverId` is already stored is a redelivery: nothing is
    /// changed and `.duplicate` returns the stored message's id.
    public func insertMessage(_ message: NewMessage) throws(DeviceStoreError) -> MessageInsertResult {
        let now = clock()
        let protection = self.protection
        return try write { db throws -> MessageInsertResult in
            if let serverId = message.serverId,
               let existing = try Int64.fetchOne(db, sql: "SELECT id FROM message WHERE server_id = ?", arguments: [serverId])
            {
                return .duplicate(MessageID(rawValue: existing))
            }
            if let uid = message.messageUid,
               let existing = try Int64.fetchOne(
                   db, sql: "SELECT id FROM message WHERE message_uid = ? AND sender_account = ?",
                   arguments: [uid, message.sender.name])
            {
                return .duplicate(MessageID(rawValue: existing))
            }
            guard try Bool.fetchOne(
                db, sql: "SELECT COUNT(*) > 0 FROM conversation WHERE id = ?", arguments: [message.conversation.rawValue]) ?? false
            else { throw DeviceStoreError.invalidArgument("no \(message.conversation)") }
            let sortAt = message.outgoing ? (message.sentAt ?? now) : (message.receivedAt ?? message.sentAt ?? now)
            try db.execute(
                sql: """
                    INSERT INTO message (conversation_id, server_id, sender_account, sender_device_id, outgoing,
                        sent_at, received_at, sort_at, body_sealed, undecryptable, message_uid, notice)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)
                    """,
                arguments: [
                    message.conversation.rawValue, message.serverId, message.sender.name, Int64(message.sender.deviceId),
                    message.outgoing, message.sentAt, message.receivedAt, sortAt, message.couldNotDecrypt, message.messageUid,
                    message.notice,
                ])
            let id = db.lastInsertedRowID
            if let body = message.body {
                let sealed = try protection.protect(Array(body.utf8), context: .messageBody(id))
                try db.execute(sql: "UPDATE message SET body_sealed = ? WHERE id = ?", arguments: [sealed, id])
                try MessageSearchIndex.add(db, id: id, body: body, protection: protection)
            }
            for (recipient, status) in message.statuses {
                try db.execute(
                    sql: "INSERT INTO message_status (message_id, recipient_account, status, updated_at) VALUES (?, ?, ?, ?)",
                    arguments: [id, recipient, status.rawValue, now])
            }
            return .inserted(MessageID(rawValue: id))
        }
    }

    /// One message. Throws `corruptRow` if its body does not unseal.
    public func message(id: MessageID) throws(DeviceStoreError) -> StoredMessage? {
        try read { db throws -> StoredMessage? in
            guard let row = try Row.fetchOne(db, sql: Self.messageSelect + " WHERE id = ?", arguments: [id.rawValue]) else {
                return nil
            }
            let message = try decodeMessage(row, statuses: try Self.statuses(db, ids: [id.rawValue]))
            if let error = message.unreadable { throw error }
            return message
        }
    }

    /// The message stored for relay envelope `serverId`, if any.
    public func messageId(serverId: UUID) throws(DeviceStoreError) -> MessageID? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM message WHERE server_id = ?", arguments: [serverId])
                .map(MessageID.init(rawValue:))
        }
    }

    /// A page of `conversation`, newest first: the `limit` messages just before `cursor` (or the
    /// newest ones when `cursor` is nil). A message whose body does not unseal is returned with
    /// `unreadable` set and no body.
    public func messages(
        in conversation: ConversationID, before cursor: MessageCursor? = nil, limit: Int
    ) throws(DeviceStoreError) -> MessagePage {
        guard (1...Self.maxPageSize).contains(limit) else {
            throw .invalidArgument("page size \(limit) is not in 1...\(Self.maxPageSize)")
        }
        return try read { db throws -> MessagePage in
            let rows: [Row]
            if let cursor {
                rows = try Row.fetchAll(
                    db,
                    sql: Self.messageSelect + """
                         WHERE conversation_id = ? AND (sort_at < ? OR (sort_at = ? AND id < ?))
                        ORDER BY sort_at DESC, id DESC LIMIT ?
                        """,
                    arguments: [conversation.rawValue, cursor.sortAt, cursor.sortAt, cursor.id.rawValue, limit + 1])
            } else {
                rows = try Row.fetchAll(
                    db, sql: Self.messageSelect + " WHERE conversation_id = ? ORDER BY sort_at DESC, id DESC LIMIT ?",
                    arguments: [conversation.rawValue, limit + 1])
            }
            let page = Array(rows.prefix(limit))
            let messages = try decodeMessages(db, page)
            return MessagePage(messages: messages, next: rows.count > limit ? messages.last?.cursor : nil)
        }
    }

    /// Full-text search over bodies (FTS5, see `MessageSearchIndex`): messages containing every
    /// word of `text` as a word prefix, diacritics and case ignored, newest first, optionally
    /// within one conversation. Text without any word finds nothing.
    public func searchMessages(
        _ text: String, in conversation: ConversationID? = nil, limit: Int = 50
    ) throws(DeviceStoreError) -> [StoredMessage] {
        guard (1...Self.maxPageSize).contains(limit) else {
            throw .invalidArgument("result size \(limit) is not in 1...\(Self.maxPageSize)")
        }
        guard let pattern = FTS5Pattern(matchingAllPrefixesIn: text) else { return [] }
        let protection = self.protection
        return try write { db throws -> [StoredMessage] in
            let schema = try MessageSearchIndex.prepare(db, protection: protection)
            let rows = try Row.fetchAll(
                db,
                sql: Self.messageSelect + """
                     WHERE id IN (SELECT rowid FROM \(schema).message_search WHERE message_search MATCH ?)
                       AND (? IS NULL OR conversation_id = ?)
                    ORDER BY sort_at DESC, id DESC LIMIT ?
                    """,
                arguments: [pattern.rawPattern, conversation?.rawValue, conversation?.rawValue, limit])
            return try decodeMessages(db, rows)
        }
    }

    /// Records `status` for `recipient` of an outgoing message, if it moves the status forward
    /// (see `DeliveryStatus`). Returns whether anything changed.
    @discardableResult
    public func setStatus(
        _ status: DeliveryStatus, for recipient: String, of message: MessageID
    ) throws(DeviceStoreError) -> Bool {
        let now = clock()
        return try write { db throws -> Bool in
            guard try Bool.fetchOne(db, sql: "SELECT COUNT(*) > 0 FROM message WHERE id = ?", arguments: [message.rawValue]) ?? false
            else { throw DeviceStoreError.invalidArgument("no \(message)") }
            let current = try String.fetchOne(
                db, sql: "SELECT status FROM message_status WHERE message_id = ? AND recipient_account = ?",
                arguments: [message.rawValue, recipient])
            if let current {
                guard let known = DeliveryStatus(rawValue: current) else {
                    throw DeviceStoreError.corruptRow(
                        table: "message_status", key: "\(message.rawValue)/\(recipient)", reason: "unknown status \(current)")
                }
                guard known.mayChange(to: status) else { return false }
            }
            // An upsert, not INSERT OR REPLACE: the row's other columns (`sent_at`, client-v7-receipts) stay.
            try db.execute(
                sql: """
                    INSERT INTO message_status (message_id, recipient_account, status, updated_at)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (message_id, recipient_account) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
                    """,
                arguments: [message.rawValue, recipient, status.rawValue, now])
            return true
        }
    }

    /// Deletes a message (and its statuses and index entry). Returns false if it did not exist.
    @discardableResult
    public func deleteMessage(id: MessageID) throws(DeviceStoreError) -> Bool {
        let protection = self.protection
        return try write { db throws -> Bool in
            try db.execute(sql: "DELETE FROM message WHERE id = ?", arguments: [id.rawValue])
            guard db.changesCount > 0 else { return false }
            try MessageSearchIndex.remove(db, id: id.rawValue, protection: protection)
            return true
        }
    }

    // MARK: placeholders (undecryptable rows waiting for a resend)

    /// `message.repair_state` of a placeholder given up (the sender could not resend it).
    static let repairUnavailable = "unavailable"

    /// The undecryptable row for the envelope `sender` sent with client timestamp `sentAt`, if any.
    public func placeholder(from sender: ProtocolAddress, sentAt: Int64) throws(DeviceStoreError) -> StoredMessage? {
        let id = try read { db in
            try Int64.fetchOne(
                db,
                sql: """
                    SELECT id FROM message
                    WHERE undecryptable = 1 AND sender_account = ? AND sender_device_id = ? AND sent_at = ? ORDER BY id LIMIT 1
                    """,
                arguments: [sender.name, Int64(sender.deviceId), sentAt])
        }
        return try id.flatMap { id throws(DeviceStoreError) in try message(id: MessageID(rawValue: id)) }
    }

    /// Replaces placeholder `id` by the message it stood for, in its place: the row keeps its id,
    /// server id and (incoming) position in the conversation; an outgoing message takes its send
    /// time as position, as every outgoing message does. If a message with the same sender-chosen
    /// id is stored already, the placeholder is deleted instead and `.duplicate` names that message.
    public func fillPlaceholder(_ id: MessageID, with message: NewMessage) throws(DeviceStoreError) -> MessageInsertResult {
        let now = clock()
        let protection = self.protection
        return try write { db throws -> MessageInsertResult in
            if let uid = message.messageUid,
               let existing = try Int64.fetchOne(
                   db, sql: "SELECT id FROM message WHERE message_uid = ? AND sender_account = ? AND id <> ?",
                   arguments: [uid, message.sender.name, id.rawValue])
            {
                try db.execute(sql: "DELETE FROM message WHERE id = ?", arguments: [id.rawValue])
                return .duplicate(MessageID(rawValue: existing))
            }
            try db.execute(
                sql: """
                    UPDATE message SET conversation_id = ?, sender_account = ?, sender_device_id = ?, outgoing = ?, sent_at = ?,
                        sort_at = CASE WHEN ? THEN COALESCE(?, sort_at) ELSE sort_at END,
                        undecryptable = 0, repair_state = NULL, message_uid = ?, notice = ?
                    WHERE id = ? AND undecryptable = 1
                    """,
                arguments: [
                    message.conversation.rawValue, message.sender.name, Int64(message.sender.deviceId), message.outgoing,
                    message.sentAt, message.outgoing, message.sentAt, message.messageUid, message.notice, id.rawValue,
                ])
            guard db.changesCount > 0 else { throw DeviceStoreError.invalidArgument("\(id) is not a placeholder") }
            if let body = message.body {
                let sealed = try protection.protect(Array(body.utf8), context: .messageBody(id.rawValue))
                try db.execute(sql: "UPDATE message SET body_sealed = ? WHERE id = ?", arguments: [sealed, id.rawValue])
                try MessageSearchIndex.add(db, id: id.rawValue, body: body, protection: protection)
            }
            for (recipient, status) in message.statuses {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO message_status (message_id, recipient_account, status, updated_at) VALUES (?, ?, ?, ?)",
                    arguments: [id.rawValue, recipient, status.rawValue, now])
            }
            return .inserted(id)
        }
    }

    /// Marks a placeholder as given up: shown as lost, no longer repaired.
    public func markPlaceholderUnavailable(_ id: MessageID) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE message SET repair_state = ? WHERE id = ? AND undecryptable = 1", arguments: [Self.repairUnavailable, id.rawValue])
        }
    }

    /// Counts one more decryption-error report for a placeholder; returns how many were sent.
    public func countRepairRequest(_ id: MessageID) throws(DeviceStoreError) -> Int {
        try write { db in
            try db.execute(sql: "UPDATE message SET repair_requests = repair_requests + 1 WHERE id = ?", arguments: [id.rawValue])
            return try Int.fetchOne(db, sql: "SELECT repair_requests FROM message WHERE id = ?", arguments: [id.rawValue]) ?? 0
        }
    }

    /// Gives up placeholders that have waited since before `before`.
    public func abandonPlaceholders(receivedBefore before: Int64) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: """
                    UPDATE message SET repair_state = ?
                    WHERE undecryptable = 1 AND repair_state IS NULL AND COALESCE(received_at, sort_at) < ?
                    """,
                arguments: [Self.repairUnavailable, before])
        }
    }

    /// How many placeholders still wait for a repair.
    public func waitingPlaceholderCount() throws(DeviceStoreError) -> Int {
        try read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message WHERE undecryptable = 1 AND repair_state IS NULL") ?? 0
        }
    }

    // MARK: decoding

    private static let messageSelect = """
        SELECT id, conversation_id, server_id, sender_account, sender_device_id, outgoing, sent_at, received_at,
            sort_at, body_sealed, undecryptable, message_uid, notice, repair_state FROM message
        """

    private func decodeMessages(_ db: Database, _ rows: [Row]) throws -> [StoredMessage] {
        var ids: [Int64] = []
        for row in rows {
            let raw: DatabaseValue = row["id"]
            if let id = Int64.fromDatabaseValue(raw) { ids.append(id) }
        }
        let statuses = try Self.statuses(db, ids: ids)
        return try rows.map { row throws -> StoredMessage in try decodeMessage(row, statuses: statuses) }
    }

    /// Decodes one row. Metadata that does not decode throws `corruptRow`; a body that does not
    /// unseal or is not UTF-8 is reported in `unreadable` so that listings go on.
    private func decodeMessage(_ row: Row, statuses: [Int64: [String: DeliveryStatus]]) throws(DeviceStoreError) -> StoredMessage {
        let table = "message"
        let id: Int64 = try row.value("id", table: table, key: "?")
        let key = String(id)
        var body: String? = nil
        var unreadable: DeviceStoreError? = nil
        if let sealed: Data = try row.optionalValue("body_sealed", table: table, key: key) {
            do throws(DeviceStoreError) {
                let plaintext = try protection.reveal(sealed, context: .messageBody(id))
                guard let text = plaintext.withBytes({ String(validating: $0, as: UTF8.self) }) else {
                    throw .corruptRow(table: table, key: key, reason: "body is not UTF-8")
                }
                body = text
            } catch {
                unreadable = error
            }
        }
        let serverId: UUID? = try row.optionalValue("server_id", table: table, key: key)
        return StoredMessage(
            id: MessageID(rawValue: id),
            conversation: ConversationID(rawValue: try row.value("conversation_id", table: table, key: key)),
            serverId: serverId,
            messageUid: try row.optionalValue("message_uid", table: table, key: key),
            sender: ProtocolAddress(
                name: try row.value("sender_account", table: table, key: key),
                deviceId: try row.uint32("sender_device_id", table: table, key: key)),
            outgoing: try row.bool("outgoing", table: table, key: key),
            sentAt: try row.optionalValue("sent_at", table: table, key: key),
            receivedAt: try row.optionalValue("received_at", table: table, key: key),
            sortAt: try row.value("sort_at", table: table, key: key),
            body: body,
            couldNotDecrypt: try row.bool("undecryptable", table: table, key: key),
            repairUnavailable: (try row.optionalValue("repair_state", table: table, key: key) as String?) == Self.repairUnavailable,
            notice: try row.bool("notice", table: table, key: key),
            statuses: statuses[id] ?? [:],
            unreadable: unreadable)
    }

    private static func statuses(_ db: Database, ids: [Int64]) throws -> [Int64: [String: DeliveryStatus]] {
        guard !ids.isEmpty else { return [:] }
        let placeholders = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        let rows = try Row.fetchAll(
            db,
            sql: "SELECT message_id, recipient_account, status FROM message_status WHERE message_id IN (\(placeholders))",
            arguments: StatementArguments(ids))
        var result: [Int64: [String: DeliveryStatus]] = [:]
        for row in rows {
            let id: Int64 = try row.value("message_id", table: "message_status", key: "?")
            let recipient: String = try row.value("recipient_account", table: "message_status", key: String(id))
            let raw: String = try row.value("status", table: "message_status", key: "\(id)/\(recipient)")
            guard let status = DeliveryStatus(rawValue: raw) else {
                throw DeviceStoreError.corruptRow(table: "message_status", key: "\(id)/\(recipient)", reason: "unknown status \(raw)")
            }
            result[id, default: [:]][recipient] = status
        }
        return result
    }
}
