import GRDB

/// The relay's SQLite schema, as migrations. Documented in Specs/storage.md (relay part).
enum SQLiteSchema {
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("relay-v1") { db in
            try db.execute(sql: """
                CREATE TABLE account (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    created_at INTEGER NOT NULL,
                    next_device_id INTEGER NOT NULL DEFAULT 2
                );
                CREATE TABLE device (
                    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                    device_id INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('active', 'pending')),
                    registration_id INTEGER NOT NULL,
                    identity_key BLOB NOT NULL,
                    name TEXT,
                    credential_hash BLOB NOT NULL,
                    signed_prekey_id INTEGER NOT NULL,
                    signed_prekey BLOB NOT NULL,
                    signed_prekey_signature BLOB NOT NULL,
                    created_at INTEGER NOT NULL,
                    last_seen INTEGER,
                    queue_count INTEGER NOT NULL DEFAULT 0,
                    queue_bytes INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (account_id, device_id)
                ) WITHOUT ROWID;
                CREATE TABLE one_time_prekey (
                    account_id INTEGER NOT NULL,
                    device_id INTEGER NOT NULL,
                    key_id INTEGER NOT NULL,
                    public_key BLOB NOT NULL,
                    PRIMARY KEY (account_id, device_id, key_id),
                    FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
                ) WITHOUT ROWID;
                CREATE TABLE link_code (
                    code TEXT PRIMARY KEY,
                    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                    creator_device_id INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('open', 'claimed', 'approved')),
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    device_id INTEGER,
                    provisioning_blob BLOB
                );
                CREATE INDEX link_code_by_device ON link_code(account_id, device_id);
                CREATE TABLE message (
                    id BLOB PRIMARY KEY,
                    kind TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'groupEvent')),
                    sender_account TEXT NOT NULL,
                    sender_device INTEGER NOT NULL,
                    conversation TEXT NOT NULL,
                    group_id BLOB,
                    type INTEGER NOT NULL,
                    content BLOB NOT NULL,
                    server_ts INTEGER NOT NULL,
                    client_ts INTEGER,
                    ref_count INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE queue_entry (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    account_id INTEGER NOT NULL,
                    device_id INTEGER NOT NULL,
                    message_id BLOB NOT NULL,
                    size INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    UNIQUE (account_id, device_id, message_id)
                );
                CREATE INDEX queue_entry_by_device ON queue_entry(account_id, device_id, seq);
                CREATE INDEX queue_entry_by_expiry ON queue_entry(expires_at);
                CREATE TABLE chat_group (
                    id BLOB PRIMARY KEY,
                    creator TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE group_member (
                    group_id BLOB NOT NULL REFERENCES chat_group(id) ON DELETE CASCADE,
                    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                    added_at INTEGER NOT NULL,
                    PRIMARY KEY (group_id, account_id)
                ) WITHOUT ROWID;
                CREATE INDEX group_member_by_account ON group_member(account_id);
                """)
        }
        migrator.registerMigration("relay-v2-push") { db in
            try db.execute(sql: """
                CREATE TABLE push_subscription (
                    account_id INTEGER NOT NULL,
                    device_id INTEGER NOT NULL,
                    endpoint TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (account_id, device_id),
                    FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
                ) WITHOUT ROWID;
                CREATE TABLE relay_setting (
                    name TEXT PRIMARY KEY,
                    value BLOB NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("relay-v3-queue-entry-by-message") { db in
            // The uniqueness index leads with the message id instead of the device. Message ids are time-ordered
            // (UUIDv7, `MessageID`), so new entries go to the index's right edge instead of a random page, and
            // an ack still finds its entry by (message, device). SQLite cannot change a table constraint in
            // place: the table is rebuilt, keeping its rows and its AUTOINCREMENT counter.
            let counter = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'queue_entry'")
            try db.execute(sql: """
                CREATE TABLE queue_entry_v3 (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    account_id INTEGER NOT NULL,
                    device_id INTEGER NOT NULL,
                    message_id BLOB NOT NULL,
                    size INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    UNIQUE (message_id, account_id, device_id)
                );
                INSERT INTO queue_entry_v3 (seq, account_id, device_id, message_id, size, expires_at)
                    SELECT seq, account_id, device_id, message_id, size, expires_at FROM queue_entry;
                DROP TABLE queue_entry;
                ALTER TABLE queue_entry_v3 RENAME TO queue_entry;
                CREATE INDEX queue_entry_by_device ON queue_entry(account_id, device_id, seq);
                CREATE INDEX queue_entry_by_expiry ON queue_entry(expires_at);
                DELETE FROM sqlite_sequence WHERE name IN ('queue_entry', 'queue_entry_v3');
                """)
            // Without a counter the table never had a row; AUTOINCREMENT creates it on the first insert.
            if let counter {
                try db.execute(
                    sql: """
                        INSERT INTO sqlite_sequence (name, seq)
                        VALUES ('queue_entry', MAX(?, (SELECT COALESCE(MAX(seq), 0) FROM queue_entry)))
                        """,
                    arguments: [counter])
            }
        }
        migrator.registerMigration("relay-v4-hardening") { db in
            try hardening(db)
        }
        migrator.registerMigration("relay-v5-group-roles") { db in
            // Roles: the creator is an admin; admins add and remove members and make admins. Existing groups
            // get their creator as admin, or (creator gone) their longest-standing member.
            // Versions: `epoch` counts the changes of a group's members and admins; events carry it.
            try db.execute(sql: """
                ALTER TABLE chat_group ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE group_member ADD COLUMN role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member'));
                UPDATE group_member SET role = 'admin'
                WHERE account_id = (SELECT a.id FROM chat_group g JOIN account a ON a.name = g.creator
                                    WHERE g.id = group_member.group_id);
                UPDATE group_member SET role = 'admin'
                WHERE NOT EXISTS (SELECT 1 FROM group_member x WHERE x.group_id = group_member.group_id AND x.role = 'admin')
                  AND account_id = (SELECT y.account_id FROM group_member y WHERE y.group_id = group_member.group_id
                                    ORDER BY y.added_at, y.account_id LIMIT 1);
                """)
        }
        migrator.registerMigration("relay-v6-kyber-prekeys") { db in
            // Signed Kyber prekeys (PQXDH): per device at most one last-resort key (kept when handed out)
            // and any number of one-time keys (deleted when handed out).
            try db.execute(sql: """
                CREATE TABLE kyber_prekey (
                    account_id INTEGER NOT NULL,
                    device_id INTEGER NOT NULL,
                    key_id INTEGER NOT NULL,
                    public_key BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
                    PRIMARY KEY (account_id, device_id, key_id),
                    FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
                ) WITHOUT ROWID;
                CREATE UNIQUE INDEX kyber_prekey_last_resort ON kyber_prekey(account_id, device_id) WHERE last_resort = 1;
                """)
        }
        migrator.registerMigration("relay-v7-account-recovery") { db in
            // Account recovery: the hash (`RecoveryCode.hash`: `sha256:` and 64 hexadecimal digits) of each
            // account's recovery code, and the attempts counted in the current window. Accounts made before have
            // no row: they cannot be recovered.
            try db.execute(sql: """
                CREATE TABLE account_recovery (
                    account_id INTEGER PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
                    code_hash TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    window_start INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0
                );
                """)
        }
        migrator.registerMigration("relay-v8-history-archive") { db in
            // A link's history archive (relay-protocol.md §4.5.1): opaque bytes sealed end to end by the approving
            // device, kept in pieces of at most 1 MiB so that neither upload nor download holds it whole. One row
            // per link (keyed by its code's hash), dropped with the link (sweep) or when the new device acknowledges.
            try db.execute(sql: """
                CREATE TABLE link_history (
                    code_hash BLOB PRIMARY KEY,
                    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                    bytes INTEGER NOT NULL,
                    pieces INTEGER NOT NULL,
                    complete INTEGER NOT NULL,
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX link_history_by_account ON link_history(account_id);
                CREATE TABLE link_history_piece (
                    code_hash BLOB NOT NULL REFERENCES link_history(code_hash) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    data BLOB NOT NULL,
                    PRIMARY KEY (code_hash, seq)
                );
                """)
        }
        return migrator
    }

    /// `relay-v4-hardening`: link codes stored as SHA-256 hashes; the sender of every queue entry and a
    /// per-sender count of each device queue (the per-sender share); the contact relation (who sent 1:1 messages
    /// to whom) that typing and presence are limited to.
    static func hardening(_ db: Database) throws {
        // Link codes: the table is rebuilt keyed by the code's hash; open codes keep working (their hash is
        // computed here), and the clear codes are gone with the old table.
        try db.execute(sql: """
            CREATE TABLE link_code_v4 (
                code_hash BLOB PRIMARY KEY,
                account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                creator_device_id INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('open', 'claimed', 'approved')),
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                device_id INTEGER,
                provisioning_blob BLOB
            ) WITHOUT ROWID;
            """)
        let hash = DatabaseFunction("parley_sha256", argumentCount: 1, pure: true) { values in
            guard let code = String.fromDatabaseValue(values[0]) else { return nil }
            return Credentials.hash(code)
        }
        db.add(function: hash)
        defer { db.remove(function: hash) }
        try db.execute(sql: """
            INSERT INTO link_code_v4 (code_hash, account_id, creator_device_id, state, created_at, expires_at, device_id,
                provisioning_blob)
            SELECT parley_sha256(code), account_id, creator_device_id, state, created_at, expires_at, device_id,
                provisioning_blob
            FROM link_code;
            """)
        try db.execute(sql: """
            DROP TABLE link_code;
            ALTER TABLE link_code_v4 RENAME TO link_code;
            CREATE INDEX link_code_by_device ON link_code(account_id, device_id);

            ALTER TABLE queue_entry ADD COLUMN sender_id INTEGER;
            UPDATE queue_entry SET sender_id = (
                SELECT a.id FROM message m JOIN account a ON a.name = m.sender_account WHERE m.id = queue_entry.message_id);
            CREATE TABLE queue_share (
                account_id INTEGER NOT NULL,
                device_id INTEGER NOT NULL,
                sender_id INTEGER NOT NULL,
                count INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                PRIMARY KEY (account_id, device_id, sender_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            ) WITHOUT ROWID;
            INSERT INTO queue_share (account_id, device_id, sender_id, count, bytes)
                SELECT account_id, device_id, sender_id, COUNT(*), SUM(size) FROM queue_entry
                WHERE sender_id IS NOT NULL AND sender_id != account_id
                GROUP BY account_id, device_id, sender_id;

            CREATE TABLE contact (
                account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                peer_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                PRIMARY KEY (account_id, peer_id)
            ) WITHOUT ROWID;
            INSERT OR IGNORE INTO contact (account_id, peer_id)
                SELECT DISTINCT q.sender_id, q.account_id FROM queue_entry q JOIN message m ON m.id = q.message_id
                WHERE m.kind = 'direct' AND q.sender_id IS NOT NULL AND q.sender_id != q.account_id;
            """)
    }
}
