import Foundation
import GRDB
import ParleyProtocol

/// Export and import of what a linked device inherits: contacts, recorded identities (with their
/// verified state), conversations and message history. Import runs in ONE transaction with
/// batched statements: all of it is stored, or nothing.
extension DeviceStore {
    // MARK: export (existing device)

    /// Every recorded identity of other devices, by name and device id.
    public func archivedIdentities() throws(DeviceStoreError) -> [ArchivedIdentity] {
        try read { db throws -> [ArchivedIdentity] in
            try Row.fetchAll(
                db, sql: "SELECT name, device_id, public_key, verified, first_seen FROM remote_identity ORDER BY name, device_id"
            ).map { row throws -> ArchivedIdentity in
                let table = "remote_identity"
                let name: String = try row.value("name", table: table, key: "?")
                let address = ProtocolAddress(name: name, deviceId: try row.uint32("device_id", table: table, key: name))
                let publicKey: Data = try row.value("public_key", table: table, key: address.description)
                guard let key = try? IdentityKey(serialized: Array(publicKey)) else {
                    throw DeviceStoreError.corruptRow(table: table, key: address.description, reason: "not a public key")
                }
                return ArchivedIdentity(
                    address: address, identityKey: key, verified: try row.bool("verified", table: table, key: address.description),
                    firstSeen: try row.value("first_seen", table: table, key: address.description))
            }
        }
    }

    /// All conversations and up to `limit` messages, newest first across all conversations
    /// (`sort_at`, then id). Messages whose body does not unseal are left out.
    public func historyArchive(messageLimit limit: Int) throws(DeviceStoreError) -> HistoryArchive {
        guard limit >= 0 else { throw .invalidArgument("negative message limit") }
        let protection = self.protection
        return try read { db throws -> HistoryArchive in
            var conversations: [ArchivedConversation] = []
            var index: [Int64: UInt32] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT id, kind, peer_account, group_id, title, created_at FROM conversation ORDER BY id")
            {
                let table = "conversation"
                let id: Int64 = try row.value("id", table: table, key: "?")
                let key = String(id)
                let kindName: String = try row.value("kind", table: table, key: key)
                let kind: ConversationKind
                switch kindName {
                case "direct": kind = .direct(peer: try row.value("peer_account", table: table, key: key))
                case "group": kind = .group(groupId: try row.value("group_id", table: table, key: key))
                default: throw DeviceStoreError.corruptRow(table: table, key: key, reason: "unknown kind \(kindName)")
                }
                index[id] = UInt32(conversations.count)
                conversations.append(
                    ArchivedConversation(
                        kind: kind, title: try row.optionalValue("title", table: table, key: key),
                        createdAt: try row.value("created_at", table: table, key: key)))
            }
            guard limit > 0 else { return HistoryArchive(conversations: conversations, messages: []) }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, conversation_id, server_id, sender_account, sender_device_id, outgoing, sent_at, received_at,
                        sort_at, body_sealed, undecryptable, message_uid FROM message WHERE notice = 0
                        ORDER BY sort_at DESC, id DESC LIMIT ?
                    """,
                arguments: [limit])
            var statuses: [Int64: [String: DeliveryStatus]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT message_id, recipient_account, status FROM message_status") {
                let id: Int64 = try row.value("message_id", table: "message_status", key: "?")
                let recipient: String = try row.value("recipient_account", table: "message_status", key: String(id))
                let raw: String = try row.value("status", table: "message_status", key: String(id))
                guard let status = DeliveryStatus(rawValue: raw) else {
                    throw DeviceStoreError.corruptRow(table: "message_status", key: String(id), reason: "unknown status")
                }
                statuses[id, default: [:]][recipient] = status
            }
            var messages: [ArchivedMessage] = []
            for row in rows {
                let table = "message"
                let id: Int64 = try row.value("id", table: table, key: "?")
                let key = String(id)
                let conversationId: Int64 = try row.value("conversation_id", table: table, key: key)
                guard let conversation = index[conversationId] else {
                    throw DeviceStoreError.corruptRow(table: table, key: key, reason: "unknown conversation")
                }
                var body: String? = nil
                if let sealed: Data = try row.optionalValue("body_sealed", table: table, key: key) {
                    guard let plaintext = try? protection.reveal(sealed, context: .messageBody(id)),
                          let text = plaintext.withBytes({ String(validating: $0, as: UTF8.self) })
                    else { continue }  // unreadable: not archived
                    body = text
                }
                messages.append(
                    ArchivedMessage(
                        conversation: conversation, serverId: try row.optionalValue("server_id", table: table, key: key),
                        sender: ProtocolAddress(
                            name: try row.value("sender_account", table: table, key: key),
                            deviceId: try row.uint32("sender_device_id", table: table, key: key)),
                        outgoing: try row.bool("outgoing", table: table, key: key),
                        sentAt: try row.optionalValue("sent_at", table: table, key: key),
                        receivedAt: try row.optionalValue("received_at", table: table, key: key),
                        sortAt: try row.value("sort_at", table: table, key: key), body: body,
                        couldNotDecrypt: try row.bool("undecryptable", table: table, key: key),
                        statuses: statuses[id] ?? [:], messageUid: try row.optionalValue("message_uid", table: table, key: key)))
            }
            return HistoryArchive(conversations: conversations, messages: messages)
        }
    }

    // MARK: import (new device)

    /// Stores contacts, identities (with their verified state and first-seen time), conversations
    /// and messages (with their original direction, sender, timestamps, server id and statuses)
    /// in one transaction. Existing rows win: a contact, identity or conversation already present
    /// is kept, a message whose server id is already stored is skipped. Returns the number of
    /// messages inserted.
    @discardableResult
    public func importArchive(
        contacts: [ArchivedContact], identities: [ArchivedIdentity], archive: HistoryArchive
    ) throws(DeviceStoreError) -> Int {
        let now = clock()
        let protection = self.protection
        return try write { db throws -> Int in
            let insertContact = try db.makeStatement(
                sql: "INSERT OR IGNORE INTO contact (account, display_name, created_at) VALUES (?, ?, ?)")
            for contact in contacts {
                try insertContact.execute(arguments: [contact.account, contact.displayName, contact.createdAt])
            }
            let insertIdentity = try db.makeStatement(
                sql: """
                    INSERT OR IGNORE INTO remote_identity (name, device_id, public_key, verified, first_seen)
                    VALUES (?, ?, ?, ?, ?)
                    """)
            for identity in identities {
                try insertIdentity.execute(arguments: [
                    identity.address.name, Int64(identity.address.deviceId), Data(identity.identityKey.serialized),
                    identity.verified, identity.firstSeen,
                ])
            }
            var conversationIds: [Int64] = []
            for conversation in archive.conversations {
                let (column, key, kind): (String, String, String) =
                    switch conversation.kind {
                    case .direct(let peer): ("peer_account", peer, "direct")
                    case .group(let groupId): ("group_id", groupId, "group")
                    }
                try db.execute(
                    sql: "INSERT OR IGNORE INTO conversation (kind, \(column), title, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [kind, key, conversation.title, conversation.createdAt])
                guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM conversation WHERE \(column) = ?", arguments: [key])
                else { throw DeviceStoreError.corruptRow(table: "conversation", key: key, reason: "vanished after insert") }
                conversationIds.append(id)
            }
            let insertMessage = try db.makeStatement(
                sql: """
                    INSERT OR IGNORE INTO message (conversation_id, server_id, sender_account, sender_device_id, outgoing,
                        sent_at, received_at, sort_at, body_sealed, undecryptable, message_uid)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
                    """)
            let sealBody = try db.makeStatement(sql: "UPDATE message SET body_sealed = ? WHERE id = ?")
            let insertStatus = try db.makeStatement(
                sql: "INSERT INTO message_status (message_id, recipient_account, status, updated_at) VALUES (?, ?, ?, ?)")
            var inserted = 0
            // Oldest first, so that local ids follow the original order.
            for message in archive.messages.reversed() {
                guard Int(message.conversation) < conversationIds.count else {
                    throw DeviceStoreError.invalidArgument("message of an unknown conversation")
                }
                try insertMessage.execute(arguments: [
                    conversationIds[Int(message.conversation)], message.serverId, message.sender.name,
                    Int64(message.sender.deviceId), message.outgoing, message.sentAt, message.receivedAt, message.sortAt,
                    message.couldNotDecrypt, message.messageUid,
                ])
                guard db.changesCount > 0 else { continue }  // server id already stored
                let id = db.lastInsertedRowID
                if let body = message.body {
                    let sealed = try protection.protect(Array(body.utf8), context: .messageBody(id))
                    try sealBody.execute(arguments: [sealed, id])
                    try MessageSearchIndex.add(db, id: id, body: body, protection: protection)
                }
                for (recipient, status) in message.statuses {
                    try insertStatus.execute(arguments: [id, recipient, status.rawValue, now])
                }
                inserted += 1
            }
            return inserted
        }
    }
}
