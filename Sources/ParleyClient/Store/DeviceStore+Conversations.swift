import GRDB

/// Conversations (`conversation`): at most one per peer account and one per group id.
extension DeviceStore {
    /// The 1:1 conversation with `peer`, created on first use.
    public func directConversation(with peer: String) throws(DeviceStoreError) -> Conversation {
        guard !peer.isEmpty else { throw .invalidArgument("empty peer account") }
        let now = clock()
        return try write { db throws -> Conversation in
            try db.execute(
                sql: "INSERT OR IGNORE INTO conversation (kind, peer_account, created_at) VALUES ('direct', ?, ?)",
                arguments: [peer, now])
            guard let row = try Row.fetchOne(db, sql: Self.conversationSelect + " WHERE peer_account = ?", arguments: [peer])
            else { throw DeviceStoreError.corruptRow(table: "conversation", key: peer, reason: "vanished after insert") }
            return try Self.conversation(row)
        }
    }

    /// The group conversation for `groupId`, created on first use; a non-nil `title` replaces
    /// the stored one.
    public func groupConversation(groupId: String, title: String? = nil) throws(DeviceStoreError) -> Conversation {
        guard !groupId.isEmpty else { throw .invalidArgument("empty group id") }
        let now = clock()
        return try write { db throws -> Conversation in
            try db.execute(
                sql: "INSERT OR IGNORE INTO conversation (kind, group_id, title, created_at) VALUES ('group', ?, ?, ?)",
                arguments: [groupId, title, now])
            if let title {
                try db.execute(sql: "UPDATE conversation SET title = ? WHERE group_id = ?", arguments: [title, groupId])
            }
            guard let row = try Row.fetchOne(db, sql: Self.conversationSelect + " WHERE group_id = ?", arguments: [groupId])
            else { throw DeviceStoreError.corruptRow(table: "conversation", key: groupId, reason: "vanished after insert") }
            return try Self.conversation(row)
        }
    }

    /// The group conversation for `groupId`, if this device has one (never creates it).
    public func existingGroupConversation(groupId: String) throws(DeviceStoreError) -> Conversation? {
        try read { db throws -> Conversation? in
            try Row.fetchOne(db, sql: Self.conversationSelect + " WHERE group_id = ?", arguments: [groupId])
                .map { row throws -> Conversation in try Self.conversation(row) }
        }
    }

    public func conversation(id: ConversationID) throws(DeviceStoreError) -> Conversation? {
        try read { db throws -> Conversation? in
            try Row.fetchOne(db, sql: Self.conversationSelect + " WHERE id = ?", arguments: [id.rawValue])
                .map { row throws -> Conversation in try Self.conversation(row) }
        }
    }

    /// All conversations, most recently active first (latest message, else creation time).
    public func conversations() throws(DeviceStoreError) -> [Conversation] {
        try read { db throws -> [Conversation] in
            try Row.fetchAll(
                db,
                sql: Self.conversationSelect + """
                     ORDER BY COALESCE((SELECT MAX(sort_at) FROM message WHERE conversation_id = conversation.id), created_at) DESC,
                        id DESC
                    """
            ).map { row throws -> Conversation in try Self.conversation(row) }
        }
    }

    /// Sets (or clears) the title of a conversation.
    public func setTitle(_ title: String?, for id: ConversationID) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "UPDATE conversation SET title = ? WHERE id = ?", arguments: [title, id.rawValue])
            guard db.changesCount > 0 else { throw DeviceStoreError.invalidArgument("no \(id)") }
        }
    }

    private static let conversationSelect = "SELECT id, kind, peer_account, group_id, title, created_at FROM conversation"

    private static func conversation(_ row: Row) throws(DeviceStoreError) -> Conversation {
        let table = "conversation"
        let id: Int64 = try row.value("id", table: table, key: "?")
        let key = String(id)
        let kindName: String = try row.value("kind", table: table, key: key)
        let kind: ConversationKind
        switch kindName {
        case "direct": kind = .direct(peer: try row.value("peer_account", table: table, key: key))
        case "group": kind = .group(groupId: try row.value("group_id", table: table, key: key))
        default: throw .corruptRow(table: table, key: key, reason: "unknown kind \(kindName)")
        }
        return Conversation(
            id: ConversationID(rawValue: id), kind: kind, title: try row.optionalValue("title", table: table, key: key),
            createdAt: try row.value("created_at", table: table, key: key))
    }
}
