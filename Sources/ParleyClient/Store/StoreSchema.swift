import GRDB

/// The device store's schema, created and upgraded by GRDB migrations (recorded in the
/// `grdb_migrations` table). Migrations are applied in order and only ever add: a released
/// migration is never edited; a change is a new migration appended here.
///
/// * `client-v1`: metadata, the protocol stores (local identity, remote identities, prekeys,
///   signed prekeys, sessions, sender keys), contacts and their devices, conversations,
///   messages with per-recipient status, and the full-text index of clear bodies.
/// * `client-v2`: what the messaging engine needs: the device's relay account and credential,
///   the sender-chosen message id (`message.message_uid`: deduplication and receipts), the
///   durable outbox, processed relay envelopes (deduplication of non-history content), group
///   members, and which member devices hold this device's current sender key.
/// * `client-v3`: rollback detection (`RollbackLedger`): a version column on every key row
///   (sessions, sender keys, one-time and signed prekeys) and the ledger of the versions they
///   must have. Existing rows get their versions when the store is first opened (it takes the
///   store key to seal them again).
/// * `client-v4-groups`: group versions and roles (`group_state`, `group_member.role`), the
///   member lists of past versions (`group_epoch`, to judge who was a member when a message was
///   sent), the resend log (`resend_log`: what this device sent, for repairs), group notices in
///   the history (`message.notice`), and the repair state of undecryptable rows
///   (`message.repair_state`, `message.repair_requests`).
/// * `client-v5-kyber`: PQXDH: the device's signed Kyber prekeys (`kyber_prekey`, secret key
///   sealed), the (Kyber prekey, signed prekey, base key) triples a last-resort Kyber prekey was
///   used with (`kyber_prekey_use`; rows versioned for rollback detection like the other key
///   rows, `RollbackLedger`), and the session policy in `meta` (`session_policy`):
///   `allowClassical` for a store created before this migration (its peers may still publish no
///   Kyber prekey), which `DeviceStore.create` replaces with `requirePostQuantum` for a new one.
///   Signed prekey timestamps written in milliseconds by earlier engines are converted to seconds.
/// * `client-v6-identity-notice`: contacts whose safety number changed (`identity_change`): the
///   key the history line was written for, when, and whether the user has looked at the new
///   safety number since (until then every command that sends to or shows the contact warns).
/// * `client-v7-receipts`: receipts per recipient device (`message_receipt`: for an outgoing
///   message, each recipient account's device, when it was sent to it, delivered and read), and
///   when each recipient account's copy left the outbox (`message_status.sent_at`). Existing
///   statuses stay as they are (rows sent before have no device rows and no `sent_at`).
/// * `client-v8-push`: this device's Web Push registration (`push_state`, one row): the relay's
///   VAPID key the device accepted (pinned at first use; kept after `unregister`), and, while
///   registered, the endpoint (sealed: it is a capability at its push service) and when it was
///   registered. A store without the row has never used push.
///
/// Conventions: timestamps are INTEGER milliseconds since 1970 UTC; uint32 ids are INTEGER;
/// columns named `*_sealed` hold `ValueProtection` output (sealed or clear, see `meta.sealing`).
enum StoreSchema {
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("client-v1") { db in
            try createVersion1(db)
        }
        migrator.registerMigration("client-v2") { db in
            try createVersion2(db)
        }
        migrator.registerMigration("client-v3") { db in
            try createVersion3(db)
        }
        migrator.registerMigration("client-v4-groups") { db in
            try createVersion4(db)
        }
        migrator.registerMigration("client-v5-kyber") { db in
            try createVersion5(db)
        }
        migrator.registerMigration("client-v6-identity-notice") { db in
            try createIdentityNotice(db)
        }
        migrator.registerMigration("client-v7-receipts") { db in
            try createVersion7Receipts(db)
        }
        migrator.registerMigration("client-v8-push") { db in
            try createPush(db)
        }
        return migrator
    }

    private static func createVersion1(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE meta (
                    name TEXT PRIMARY KEY NOT NULL,
                    value BLOB NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE local_identity (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    public_key BLOB NOT NULL,
                    private_key_sealed BLOB NOT NULL,
                    registration_id INTEGER NOT NULL,
                    created_at INTEGER NOT NULL
                );

                CREATE TABLE remote_identity (
                    name TEXT NOT NULL,
                    device_id INTEGER NOT NULL,
                    public_key BLOB NOT NULL,
                    verified INTEGER NOT NULL DEFAULT 0,
                    first_seen INTEGER NOT NULL,
                    PRIMARY KEY (name, device_id)
                ) WITHOUT ROWID;

                CREATE TABLE prekey (
                    id INTEGER PRIMARY KEY,
                    public_key BLOB NOT NULL,
                    private_key_sealed BLOB NOT NULL
                );

                CREATE TABLE signed_prekey (
                    id INTEGER PRIMARY KEY,
                    public_key BLOB NOT NULL,
                    private_key_sealed BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    timestamp INTEGER NOT NULL
                );

                CREATE TABLE session (
                    name TEXT NOT NULL,
                    device_id INTEGER NOT NULL,
                    record_sealed BLOB NOT NULL,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (name, device_id)
                ) WITHOUT ROWID;

                CREATE TABLE sender_key (
                    group_id TEXT NOT NULL,
                    sender_name TEXT NOT NULL,
                    sender_device_id INTEGER NOT NULL,
                    record_sealed BLOB NOT NULL,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (group_id, sender_name, sender_device_id)
                ) WITHOUT ROWID;

                CREATE TABLE contact (
                    account TEXT PRIMARY KEY NOT NULL,
                    display_name TEXT,
                    created_at INTEGER NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE contact_device (
                    account TEXT NOT NULL REFERENCES contact(account) ON DELETE CASCADE,
                    device_id INTEGER NOT NULL,
                    registration_id INTEGER NOT NULL,
                    PRIMARY KEY (account, device_id)
                ) WITHOUT ROWID;

                CREATE TABLE conversation (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
                    peer_account TEXT UNIQUE,
                    group_id TEXT UNIQUE,
                    title TEXT,
                    created_at INTEGER NOT NULL,
                    CHECK ((kind = 'direct' AND peer_account IS NOT NULL AND group_id IS NULL)
                        OR (kind = 'group' AND group_id IS NOT NULL AND peer_account IS NULL))
                );

                CREATE TABLE message (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    conversation_id INTEGER NOT NULL REFERENCES conversation(id) ON DELETE CASCADE,
                    server_id BLOB UNIQUE,
                    sender_account TEXT NOT NULL,
                    sender_device_id INTEGER NOT NULL,
                    outgoing INTEGER NOT NULL,
                    sent_at INTEGER,
                    received_at INTEGER,
                    sort_at INTEGER NOT NULL,
                    body_sealed BLOB,
                    undecryptable INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX message_by_conversation ON message (conversation_id, sort_at, id);

                CREATE TABLE message_status (
                    message_id INTEGER NOT NULL REFERENCES message(id) ON DELETE CASCADE,
                    recipient_account TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed')),
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (message_id, recipient_account)
                ) WITHOUT ROWID;

                CREATE VIRTUAL TABLE message_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
                """)
    }

    private static func createVersion2(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE local_account (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    name TEXT NOT NULL,
                    device_id INTEGER NOT NULL,
                    credential_sealed BLOB NOT NULL,
                    server_url TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                );

                ALTER TABLE message ADD COLUMN message_uid TEXT;
                CREATE INDEX message_by_uid ON message (message_uid, sender_account);

                CREATE TABLE outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    destination_kind TEXT NOT NULL CHECK (destination_kind IN ('direct', 'group')),
                    destination TEXT NOT NULL,
                    content_sealed BLOB NOT NULL,
                    own_content_sealed BLOB,
                    message_uid TEXT,
                    client_timestamp INTEGER,
                    created_at INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT
                );

                CREATE TABLE processed_envelope (
                    server_id BLOB PRIMARY KEY NOT NULL,
                    processed_at INTEGER NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE group_member (
                    group_id TEXT NOT NULL,
                    account TEXT NOT NULL,
                    PRIMARY KEY (group_id, account)
                ) WITHOUT ROWID;

                CREATE TABLE sender_key_shared (
                    group_id TEXT NOT NULL,
                    account TEXT NOT NULL,
                    device_id INTEGER NOT NULL,
                    PRIMARY KEY (group_id, account, device_id)
                ) WITHOUT ROWID;
                """)
    }

    private static func createVersion3(_ db: Database) throws {
        try db.execute(
            sql: """
                ALTER TABLE session ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE sender_key ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE prekey ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE signed_prekey ADD COLUMN seal_version INTEGER NOT NULL DEFAULT 0;

                CREATE TABLE seal_ledger (
                    tbl TEXT NOT NULL,
                    row_key BLOB NOT NULL,
                    version INTEGER NOT NULL,
                    PRIMARY KEY (tbl, row_key)
                ) WITHOUT ROWID;
                """)
    }

    private static func createVersion4(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE group_state (
                    group_id TEXT PRIMARY KEY NOT NULL,
                    epoch INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                ) WITHOUT ROWID;

                ALTER TABLE group_member ADD COLUMN role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member'));

                CREATE TABLE group_epoch (
                    group_id TEXT NOT NULL,
                    epoch INTEGER NOT NULL,
                    members TEXT NOT NULL,
                    recorded_at INTEGER NOT NULL,
                    PRIMARY KEY (group_id, epoch)
                ) WITHOUT ROWID;

                CREATE TABLE resend_log (
                    sent_timestamp INTEGER PRIMARY KEY,
                    destination_kind TEXT NOT NULL CHECK (destination_kind IN ('direct', 'group')),
                    destination TEXT NOT NULL,
                    group_id TEXT,
                    group_epoch INTEGER,
                    content_sealed BLOB,
                    own_content_sealed BLOB,
                    logged_at INTEGER NOT NULL
                );
                CREATE INDEX resend_log_by_age ON resend_log (logged_at);

                ALTER TABLE message ADD COLUMN notice INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE message ADD COLUMN repair_state TEXT;
                ALTER TABLE message ADD COLUMN repair_requests INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX message_placeholder ON message (sender_account, sender_device_id, sent_at) WHERE undecryptable = 1;
                """)
    }

    private static func createVersion7Receipts(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE message_receipt (
                    message_id INTEGER NOT NULL REFERENCES message(id) ON DELETE CASCADE,
                    recipient_account TEXT NOT NULL,
                    device_id INTEGER NOT NULL,
                    sent_at INTEGER,
                    delivered_at INTEGER,
                    read_at INTEGER,
                    PRIMARY KEY (message_id, recipient_account, device_id)
                ) WITHOUT ROWID;

                ALTER TABLE message_status ADD COLUMN sent_at INTEGER;
                """)
    }

    private static func createVersion5(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE kyber_prekey (
                    id INTEGER PRIMARY KEY,
                    public_key BLOB NOT NULL,
                    secret_key_sealed BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    timestamp INTEGER NOT NULL,
                    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
                    seal_version INTEGER NOT NULL DEFAULT 0
                );

                CREATE TABLE kyber_prekey_use (
                    kyber_prekey_id INTEGER NOT NULL REFERENCES kyber_prekey(id) ON DELETE CASCADE,
                    signed_prekey_id INTEGER NOT NULL,
                    base_key BLOB NOT NULL,
                    PRIMARY KEY (kyber_prekey_id, signed_prekey_id, base_key)
                ) WITHOUT ROWID;

                INSERT OR IGNORE INTO meta (name, value) VALUES ('session_policy', 'allowClassical');

                -- Signed prekeys registered by ParleyDevice before this migration were stamped in milliseconds
                -- (PreKeyPolicy periods are seconds): 10^11 seconds is the year 5138, so any larger stamp is
                -- milliseconds.
                UPDATE signed_prekey SET timestamp = timestamp / 1000 WHERE timestamp >= 100000000000;
                """)
    }

    private static func createIdentityNotice(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE identity_change (
                    account TEXT PRIMARY KEY NOT NULL,
                    public_key BLOB NOT NULL,
                    changed_at INTEGER NOT NULL,
                    refused INTEGER NOT NULL CHECK (refused IN (0, 1)),
                    acknowledged INTEGER NOT NULL DEFAULT 0 CHECK (acknowledged IN (0, 1))
                ) WITHOUT ROWID;
                """)
    }

    private static func createPush(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE push_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    vapid_key BLOB NOT NULL CHECK (length(vapid_key) = 65),
                    vapid_key_seen_at INTEGER NOT NULL,
                    endpoint_sealed BLOB,
                    registered_at INTEGER,
                    CHECK ((endpoint_sealed IS NULL) = (registered_at IS NULL))
                );
                """)
    }
}
