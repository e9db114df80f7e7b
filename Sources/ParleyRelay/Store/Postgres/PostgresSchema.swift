import Logging
import PostgresNIO

/// The relay's PostgreSQL schema, as versioned migrations the relay applies itself at start (table
/// `relay_migration`). Documented next to the SQLite schema in Specs/storage.md.
///
/// Several nodes may start at once: the migrations run under a session advisory lock, so one node migrates and
/// the others find the work done. A database migrated by a newer relay (a migration this build does not know) is
/// refused rather than written to.
enum PostgresSchema {
    struct Migration: Sendable {
        let name: String
        let statements: [String]
    }

    /// Hash partitions of `queue_entry` (by `account_id`). A device's queue is in one partition; see
    /// Specs/scaling.md for why hash by account rather than by time.
    static let queuePartitions = 16


    static let migrations: [Migration] = [
        Migration(name: "relay-pg-v1", statements: v1()),
        Migration(name: "relay-pg-v2-hardening", statements: v2Hardening()),
        Migration(name: "relay-pg-v3-group-roles", statements: v3GroupRoles()),
        Migration(name: "relay-pg-v4-kyber-prekeys", statements: v4KyberPreKeys()),
        Migration(name: "relay-pg-v5-ack-function", statements: v5AckFunction()),
        Migration(name: "relay-pg-v6-account-recovery", statements: v6AccountRecovery()),
        Migration(name: "relay-pg-v7-queue-release", statements: v7QueueRelease()),
        Migration(name: "relay-pg-v8-history-archive", statements: v8HistoryArchive()),
        Migration(name: "relay-pg-v9-ack-plans", statements: v9AckPlans()),
    ]

    /// `relay-pg-v9-ack-plans` (no SQLite counterpart): how PostgreSQL plans `parley_ack`'s statements. Every one of
    /// them reads or writes rows by key, but the tables it touches are small and churn fast (rows live seconds), so
    /// their statistics make a sequential scan look cheapest: on `message`, that scan reads every dead row not yet
    /// vacuumed, three times per ack batch (sampled with auto_explain during the two-node latency run: 2.5-7 ms per
    /// statement where the lookups take microseconds). Sequential scans are turned off inside the function, and
    /// its statements keep one generic plan per session instead of being planned again on each call (the delete
    /// from the partitioned `queue_entry` was planned anew each time: 0.7 ms of planning per ack batch).
    private static func v9AckPlans() -> [String] {
        [
            "ALTER FUNCTION parley_ack(BIGINT[], BIGINT[], UUID[]) SET enable_seqscan = off",
            "ALTER FUNCTION parley_ack(BIGINT[], BIGINT[], UUID[]) SET plan_cache_mode = force_generic_plan",
        ]
    }

    /// `relay-pg-v7-queue-release` (no SQLite counterpart: one SQLite writer has no lock conflicts to avoid). Acks no
    /// longer touch the rows sends lock. A device's queue size was one pair of counters on its `device` row, which
    /// every send to the device and every ack of the device changed, so each ack batch waited for the send batches
    /// holding those rows and the other way round (with two nodes, one node's sends and the other's acks lock the
    /// same devices). Now `device.queue_count`/`queue_bytes` and `queue_share.count`/`bytes` count what sends
    /// added (less what expiry removed, under the device's lock), and acks add what they removed to
    /// `queue_release`/`queue_share_release`, rows no send locks: a queue's size is the difference. A send reads
    /// the release rows without locking them; an ack committed meanwhile only makes the queue smaller than the
    /// send counted (the check errs on the full side). The expiry sweep folds release rows back into the counters
    /// under the devices' locks, so neither table keeps rows for queues that emptied long ago. `parley_ack` is
    /// replaced by one that takes no device lock.
    private static func v7QueueRelease() -> [String] {
        [
            """
            CREATE TABLE queue_release (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                count BIGINT NOT NULL,
                bytes BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            ) WITH (fillfactor = 70)
            """,
            """
            CREATE TABLE queue_share_release (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                sender_id BIGINT NOT NULL,
                count BIGINT NOT NULL,
                bytes BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id, sender_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            ) WITH (fillfactor = 70)
            """,
            """
            CREATE OR REPLACE FUNCTION parley_ack(p_accounts BIGINT[], p_devices BIGINT[], p_ids UUID[])
            RETURNS TABLE (removed_account BIGINT, removed_device BIGINT, removed_message UUID)
            LANGUAGE plpgsql AS $fn$
            DECLARE
                r_accounts BIGINT[];
                r_devices BIGINT[];
                r_ids UUID[];
                r_sizes INTEGER[];
                r_senders BIGINT[];
            BEGIN
                WITH removed AS (
                    DELETE FROM queue_entry q USING unnest(p_accounts, p_devices, p_ids) AS t(a, v, i)
                    WHERE q.message_id = t.i AND q.account_id = t.a AND q.device_id = t.v
                    RETURNING q.account_id, q.device_id, q.message_id, q.size, q.sender_id)
                SELECT array_agg(r.account_id), array_agg(r.device_id), array_agg(r.message_id), array_agg(r.size),
                       array_agg(r.sender_id)
                    INTO r_accounts, r_devices, r_ids, r_sizes, r_senders FROM removed r;
                IF r_ids IS NULL THEN
                    RETURN;
                END IF;
                PERFORM 1 FROM message m WHERE m.id = ANY(r_ids) ORDER BY m.id FOR UPDATE;
                WITH refs AS (SELECT t.i, count(*) AS n FROM unnest(r_ids) AS t(i) GROUP BY t.i)
                DELETE FROM message m USING refs WHERE m.id = refs.i AND m.ref_count <= refs.n;
                WITH refs AS (SELECT t.i, count(*) AS n FROM unnest(r_ids) AS t(i) GROUP BY t.i)
                UPDATE message m SET ref_count = m.ref_count - refs.n FROM refs WHERE m.id = refs.i;
                INSERT INTO queue_share_release AS q (account_id, device_id, sender_id, count, bytes)
                    SELECT t.a, t.v, t.s, count(*), sum(t.z)
                    FROM unnest(r_accounts, r_devices, r_senders, r_sizes) AS t(a, v, s, z)
                    WHERE t.s IS NOT NULL AND t.s <> t.a GROUP BY t.a, t.v, t.s ORDER BY t.a, t.v, t.s
                    ON CONFLICT (account_id, device_id, sender_id)
                    DO UPDATE SET count = q.count + excluded.count, bytes = q.bytes + excluded.bytes;
                INSERT INTO queue_release AS q (account_id, device_id, count, bytes)
                    SELECT t.a, t.v, count(*), sum(t.z) FROM unnest(r_accounts, r_devices, r_sizes) AS t(a, v, z)
                    GROUP BY t.a, t.v ORDER BY t.a, t.v
                    ON CONFLICT (account_id, device_id)
                    DO UPDATE SET count = q.count + excluded.count, bytes = q.bytes + excluded.bytes;
                RETURN QUERY SELECT t.a, t.v, t.i FROM unnest(r_accounts, r_devices, r_ids) AS t(a, v, i);
            END
            $fn$
            """,
        ]
    }

    /// `relay-pg-v5-ack-function` (no SQLite counterpart: SQLite runs in the relay's process, with no round trips):
    /// `parley_ack`, one batch of device acks as one statement. The same steps `PostgresRelayStore.removeEntries`
    /// runs as eight statements for expiry: the acking devices' rows locked in key order; their queue entries for the
    /// acked ids deleted; each message's references dropped (its row locked, in id order; deleted at zero); the
    /// senders' shares and the devices' counters decremented. As one statement the transaction holds the devices'
    /// rows (which every send to them also locks) for the server's work alone, not for eight round trips to the
    /// relay. Returns the entries removed.
    private static func v5AckFunction() -> [String] {
        [
            """
            CREATE FUNCTION parley_ack(p_accounts BIGINT[], p_devices BIGINT[], p_ids UUID[])
            RETURNS TABLE (removed_account BIGINT, removed_device BIGINT, removed_message UUID)
            LANGUAGE plpgsql AS $fn$
            DECLARE
                r_accounts BIGINT[];
                r_devices BIGINT[];
                r_ids UUID[];
                r_sizes INTEGER[];
                r_senders BIGINT[];
            BEGIN
                PERFORM 1 FROM device d
                    JOIN (SELECT DISTINCT t.a, t.v FROM unnest(p_accounts, p_devices) AS t(a, v)) k
                        ON d.account_id = k.a AND d.device_id = k.v
                    ORDER BY d.account_id, d.device_id FOR NO KEY UPDATE OF d;
                WITH removed AS (
                    DELETE FROM queue_entry q USING unnest(p_accounts, p_devices, p_ids) AS t(a, v, i)
                    WHERE q.message_id = t.i AND q.account_id = t.a AND q.device_id = t.v
                    RETURNING q.account_id, q.device_id, q.message_id, q.size, q.sender_id)
                SELECT array_agg(r.account_id), array_agg(r.device_id), array_agg(r.message_id), array_agg(r.size),
                       array_agg(r.sender_id)
                    INTO r_accounts, r_devices, r_ids, r_sizes, r_senders FROM removed r;
                IF r_ids IS NULL THEN
                    RETURN;
                END IF;
                PERFORM 1 FROM message m WHERE m.id = ANY(r_ids) ORDER BY m.id FOR UPDATE;
                WITH refs AS (SELECT t.i, count(*) AS n FROM unnest(r_ids) AS t(i) GROUP BY t.i)
                DELETE FROM message m USING refs WHERE m.id = refs.i AND m.ref_count <= refs.n;
                WITH refs AS (SELECT t.i, count(*) AS n FROM unnest(r_ids) AS t(i) GROUP BY t.i)
                UPDATE message m SET ref_count = m.ref_count - refs.n FROM refs WHERE m.id = refs.i;
                WITH s AS (
                    SELECT t.a, t.v, t.s, count(*) AS c, sum(t.z) AS b
                    FROM unnest(r_accounts, r_devices, r_senders, r_sizes) AS t(a, v, s, z)
                    WHERE t.s IS NOT NULL AND t.s <> t.a GROUP BY t.a, t.v, t.s)
                UPDATE queue_share q SET count = q.count - s.c, bytes = q.bytes - s.b FROM s
                WHERE q.account_id = s.a AND q.device_id = s.v AND q.sender_id = s.s;
                DELETE FROM queue_share q USING (
                    SELECT DISTINCT t.a, t.v, t.s FROM unnest(r_accounts, r_devices, r_senders) AS t(a, v, s)
                    WHERE t.s IS NOT NULL AND t.s <> t.a) s
                WHERE q.account_id = s.a AND q.device_id = s.v AND q.sender_id = s.s AND q.count <= 0;
                WITH c AS (
                    SELECT t.a, t.v, count(*) AS n, sum(t.z) AS b FROM unnest(r_accounts, r_devices, r_sizes) AS t(a, v, z)
                    GROUP BY t.a, t.v)
                UPDATE device d SET queue_count = d.queue_count - c.n, queue_bytes = d.queue_bytes - c.b FROM c
                WHERE d.account_id = c.a AND d.device_id = c.v;
                RETURN QUERY SELECT t.a, t.v, t.i FROM unnest(r_accounts, r_devices, r_ids) AS t(a, v, i);
            END
            $fn$
            """
        ]
    }

    /// `relay-pg-v8-history-archive`, the counterpart of SQLite's `relay-v8-history-archive`: a link's history
    /// archive in pieces of at most 1 MiB (BYTEA, TOASTed), one `link_history` row per link. Tables rather than
    /// files so that every node serves the archive, whichever node received it.
    private static func v8HistoryArchive() -> [String] {
        [
            """
            CREATE TABLE link_history (
                code_hash BYTEA PRIMARY KEY,
                account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                bytes BIGINT NOT NULL,
                pieces BIGINT NOT NULL,
                complete BOOLEAN NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX link_history_by_account ON link_history(account_id)",
            """
            CREATE TABLE link_history_piece (
                code_hash BYTEA NOT NULL REFERENCES link_history(code_hash) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (code_hash, seq)
            )
            """,
        ]
    }

    /// `relay-pg-v6-account-recovery`, the counterpart of SQLite's `relay-v7-account-recovery`: the hash
    /// (`RecoveryCode.hash`: `sha256:` and 64 hexadecimal digits) of each account's recovery code, and the recovery
    /// attempts counted in the current window. Accounts made before have no row: they cannot be recovered.
    private static func v6AccountRecovery() -> [String] {
        [
            """
            CREATE TABLE account_recovery (
                account_id BIGINT PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
                code_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                window_start BIGINT NOT NULL DEFAULT 0,
                attempts BIGINT NOT NULL DEFAULT 0
            )
            """
        ]
    }

    /// `relay-pg-v4-kyber-prekeys`, the counterpart of SQLite's `relay-v6-kyber-prekeys`: signed Kyber prekeys
    /// (PQXDH), per device at most one last-resort key (kept when handed out) and any number of one-time keys
    /// (deleted when handed out). Created empty: devices registered before it publish Kyber prekeys when the
    /// low-prekey notice tells them to.
    private static func v4KyberPreKeys() -> [String] {
        [
            """
            CREATE TABLE kyber_prekey (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                key_id BIGINT NOT NULL,
                public_key BYTEA NOT NULL,
                signature BYTEA NOT NULL,
                last_resort BOOLEAN NOT NULL,
                PRIMARY KEY (account_id, device_id, key_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            )
            """,
            "CREATE UNIQUE INDEX kyber_prekey_last_resort ON kyber_prekey (account_id, device_id) WHERE last_resort",
        ]
    }

    /// `relay-pg-v3-group-roles`, the counterpart of SQLite's `relay-v5-group-roles`. Roles: every member is an
    /// `admin` or a plain `member`; existing groups get their creator as admin, or (creator gone) their
    /// longest-standing member (earliest `added_at`, then account id). Versions: `chat_group.epoch` counts the changes
    /// of a group's members and admins (1 at creation); membership events carry it.
    private static func v3GroupRoles() -> [String] {
        [
            "ALTER TABLE chat_group ADD COLUMN epoch BIGINT NOT NULL DEFAULT 1",
            """
            ALTER TABLE group_member ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
                CONSTRAINT group_member_role CHECK (role IN ('admin', 'member'))
            """,
            """
            UPDATE group_member m SET role = 'admin' FROM chat_group g JOIN account a ON a.name = g.creator
            WHERE g.id = m.group_id AND a.id = m.account_id
            """,
            """
            UPDATE group_member m SET role = 'admin'
            WHERE NOT EXISTS (SELECT 1 FROM group_member x WHERE x.group_id = m.group_id AND x.role = 'admin')
              AND m.account_id = (SELECT y.account_id FROM group_member y WHERE y.group_id = m.group_id
                                  ORDER BY y.added_at, y.account_id LIMIT 1)
            """,
        ]
    }

    /// `relay-pg-v2-hardening`, the counterpart of SQLite's `relay-v4-hardening`: link codes stored as SHA-256
    /// hashes (open codes keep working: their hash is computed here, and the clear codes are dropped); the sender of
    /// every queue entry and the per-sender share of each device queue (`queue_share`, filled from the queued
    /// entries); the contact relation (`contact`, filled from the queued 1:1 messages).
    private static func v2Hardening() -> [String] {
        [
            "ALTER TABLE link_code ADD COLUMN code_hash BYTEA",
            "UPDATE link_code SET code_hash = sha256(convert_to(code, 'UTF8'))",
            // Dropping the clear code drops its primary key; the hash becomes the key.
            "ALTER TABLE link_code DROP COLUMN code",
            "ALTER TABLE link_code ALTER COLUMN code_hash SET NOT NULL",
            "ALTER TABLE link_code ADD PRIMARY KEY (code_hash)",
            "ALTER TABLE queue_entry ADD COLUMN sender_id BIGINT",
            """
            UPDATE queue_entry q SET sender_id = a.id FROM message m JOIN account a ON a.name = m.sender_account
            WHERE m.id = q.message_id
            """,
            // Changed with every send and ack of a full-ish queue: room on the page for HOT updates.
            """
            CREATE TABLE queue_share (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                sender_id BIGINT NOT NULL,
                count BIGINT NOT NULL,
                bytes BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id, sender_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            ) WITH (fillfactor = 70)
            """,
            """
            INSERT INTO queue_share (account_id, device_id, sender_id, count, bytes)
            SELECT account_id, device_id, sender_id, COUNT(*), SUM(size) FROM queue_entry
            WHERE sender_id IS NOT NULL AND sender_id <> account_id
            GROUP BY account_id, device_id, sender_id
            """,
            """
            CREATE TABLE contact (
                account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                peer_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                PRIMARY KEY (account_id, peer_id)
            )
            """,
            """
            INSERT INTO contact (account_id, peer_id)
            SELECT DISTINCT q.sender_id, q.account_id FROM queue_entry q JOIN message m ON m.id = q.message_id
            WHERE m.kind = 'direct' AND q.sender_id IS NOT NULL AND q.sender_id <> q.account_id
            ON CONFLICT DO NOTHING
            """,
        ]
    }

    private static func v1() -> [String] {
        var statements = [
            """
            CREATE TABLE account (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                next_device_id BIGINT NOT NULL DEFAULT 2
            )
            """,
            // Queue counters and the queue sequence change with every send and ack: room on the page for HOT updates.
            """
            CREATE TABLE device (
                account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                device_id BIGINT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('active', 'pending')),
                registration_id BIGINT NOT NULL,
                identity_key BYTEA NOT NULL,
                name TEXT,
                credential_hash BYTEA NOT NULL,
                signed_prekey_id BIGINT NOT NULL,
                signed_prekey BYTEA NOT NULL,
                signed_prekey_signature BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                last_seen BIGINT,
                queue_count BIGINT NOT NULL DEFAULT 0,
                queue_bytes BIGINT NOT NULL DEFAULT 0,
                queue_seq BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (account_id, device_id)
            ) WITH (fillfactor = 70)
            """,
            """
            CREATE TABLE one_time_prekey (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                key_id BIGINT NOT NULL,
                public_key BYTEA NOT NULL,
                PRIMARY KEY (account_id, device_id, key_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            )
            """,
            """
            CREATE TABLE link_code (
                code TEXT PRIMARY KEY,
                account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                creator_device_id BIGINT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('open', 'claimed', 'approved')),
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                device_id BIGINT,
                provisioning_blob BYTEA
            )
            """,
            "CREATE INDEX link_code_by_device ON link_code (account_id, device_id)",
            """
            CREATE TABLE message (
                id UUID PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'groupEvent')),
                sender_account TEXT NOT NULL,
                sender_device BIGINT NOT NULL,
                conversation TEXT NOT NULL,
                group_id UUID,
                type INTEGER NOT NULL,
                content BYTEA NOT NULL,
                server_ts BIGINT NOT NULL,
                client_ts BIGINT,
                ref_count INTEGER NOT NULL
            )
            """,
            // Ciphertext does not compress: store large values out of line without trying.
            "ALTER TABLE message ALTER COLUMN content SET STORAGE EXTERNAL",
            """
            CREATE TABLE queue_entry (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                message_id UUID NOT NULL,
                size INTEGER NOT NULL,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id, seq)
            ) PARTITION BY HASH (account_id)
            """,
        ]
        for remainder in 0..<queuePartitions {
            statements.append(
                """
                CREATE TABLE queue_entry_p\(remainder) PARTITION OF queue_entry
                FOR VALUES WITH (MODULUS \(queuePartitions), REMAINDER \(remainder))
                """)
        }
        statements += [
            "CREATE UNIQUE INDEX queue_entry_by_message ON queue_entry (message_id, account_id, device_id)",
            "CREATE INDEX queue_entry_by_expiry ON queue_entry (expires_at)",
            """
            CREATE TABLE chat_group (
                id UUID PRIMARY KEY,
                creator TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE group_member (
                group_id UUID NOT NULL REFERENCES chat_group(id) ON DELETE CASCADE,
                account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                added_at BIGINT NOT NULL,
                PRIMARY KEY (group_id, account_id)
            )
            """,
            "CREATE INDEX group_member_by_account ON group_member (account_id)",
            """
            CREATE TABLE push_subscription (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                endpoint TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            )
            """,
            """
            CREATE TABLE relay_setting (
                name TEXT PRIMARY KEY,
                value BYTEA NOT NULL
            )
            """,
            """
            CREATE TABLE relay_node (
                id BIGINT PRIMARY KEY,
                started_at BIGINT NOT NULL,
                lease_until BIGINT NOT NULL,
                description TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE device_connection (
                account_id BIGINT NOT NULL,
                device_id BIGINT NOT NULL,
                node_id BIGINT NOT NULL,
                connection_id BIGINT NOT NULL,
                connected_at BIGINT NOT NULL,
                PRIMARY KEY (account_id, device_id),
                FOREIGN KEY (account_id, device_id) REFERENCES device(account_id, device_id) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX device_connection_by_node ON device_connection (node_id)",
        ]
        return statements
    }

    /// Applies the migrations this database has not had yet, in order, each in its own transaction (up to and
    /// including `last`, when given: tests build a database as an older relay left it).
    static func migrate(_ client: PostgresClient, schema: String, logger: Logger, upTo last: String? = nil) async throws {
        try await client.withConnection { connection in
            // One lock per schema: nodes of one deployment wait for each other, other schemas do not.
            let lock = "parley-relay-migration:\(schema)"
            _ = try await connection.query("SELECT pg_advisory_lock(hashtext(\(lock)))", logger: logger).collect()
            do {
                try await migrate(connection, schema: schema, logger: logger, upTo: last)
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(hashtext(\(lock)))", logger: logger).collect()
                throw error
            }
            _ = try await connection.query("SELECT pg_advisory_unlock(hashtext(\(lock)))", logger: logger).collect()
        }
    }

    private static func migrate(_ connection: PostgresConnection, schema: String, logger: Logger, upTo last: String?) async throws {
        _ = try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: logger).collect()
        _ = try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS relay_migration (
                name TEXT PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )
            """, logger: logger
        ).collect()
        var applied = Set<String>()
        for try await name in try await connection.query("SELECT name FROM relay_migration", logger: logger).decode(String.self) {
            applied.insert(name)
        }
        let known = Set(migrations.map(\.name))
        let unknown = applied.subtracting(known)
        guard unknown.isEmpty else { throw PostgresStoreError.schemaTooNew(unknown.sorted()) }
        var wanted = migrations
        if let last, let index = migrations.firstIndex(where: { $0.name == last }) { wanted = Array(migrations[...index]) }
        for migration in wanted where !applied.contains(migration.name) {
            logger.notice("applying database migration", metadata: ["migration": "\(migration.name)"])
            try await connection.withTransaction(logger: logger) { connection in
                for statement in migration.statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                }
                let now = RelayClock.nowMillis()
                _ = try await connection.query(
                    "INSERT INTO relay_migration (name, applied_at) VALUES (\(migration.name), \(now))", logger: logger
                ).collect()
            }
        }
    }
}

/// The PostgreSQL database cannot be used by this relay.
public enum PostgresStoreError: Error, CustomStringConvertible {
    /// The database has migrations this relay build does not know (a newer relay migrated it).
    case schemaTooNew([String])
    /// The connection closed (the server went away) before the statement completed (a store call answers 503).
    case connectionClosed

    public var description: String {
        switch self {
        case .schemaTooNew(let names):
            "the database was migrated by a newer relay (unknown migrations: \(names.joined(separator: ", ")))"
        case .connectionClosed:
            "the database connection closed"
        }
    }
}
