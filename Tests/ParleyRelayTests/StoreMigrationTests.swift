import Foundation
import GRDB
import Logging
import PostgresNIO
import Testing

@testable import ParleyRelay

@Suite("Relay store: migrations and message ids")
struct StoreMigrationTests {
    /// A relay database from before `relay-v3` keeps its queued entries, their sequence numbers and the
    /// AUTOINCREMENT counter (also above the largest remaining entry), and gets the new uniqueness index.
    @Test func queueEntryRebuildKeepsRowsAndCounter() throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-migration-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let queue = try DatabaseQueue(path: path)
        let migrator = SQLiteSchema.migrator()
        try migrator.migrate(queue, upTo: "relay-v2-push")

        let ids = (0..<4).map { _ in UUID() }
        try queue.write { db in
            for (index, id) in ids.enumerated() {
                try db.execute(
                    sql: "INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [1 + index % 2, 1, id, 100 + index, 1_000 + index])
            }
            // The newest entry was acknowledged: the counter (4) is above the largest remaining seq (3).
            try db.execute(sql: "DELETE FROM queue_entry WHERE seq = 4")
        }
        try migrator.migrate(queue)

        try queue.write { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT seq, account_id, device_id, message_id, size, expires_at FROM queue_entry ORDER BY seq")
            #expect(rows.map { $0["seq"] as Int64 } == [1, 2, 3])
            #expect(rows.map { $0["message_id"] as UUID } == Array(ids.prefix(3)))
            #expect(rows.map { $0["size"] as Int } == [100, 101, 102])
            #expect(try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'queue_entry'") == 4)

            // New entries continue above the old counter; (message, account, device) stays unique.
            try db.execute(
                sql: "INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at) VALUES (2, 1, ?, 1, 1)",
                arguments: [UUID()])
            #expect(db.lastInsertedRowID == 5)
            #expect(throws: DatabaseError.self) {
                try db.execute(
                    sql: "INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at) VALUES (1, 1, ?, 1, 1)",
                    arguments: [ids[0]])
            }
            let indexes = try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue_entry' ORDER BY name")
            #expect(indexes.contains("queue_entry_by_device"))
            #expect(indexes.contains("queue_entry_by_expiry"))
            let unique = try Row.fetchAll(db, sql: "PRAGMA index_list(queue_entry)").filter { ($0["unique"] as Int) == 1 }
            #expect(unique.count == 1)
            if let name: String = unique.first?["name"] {
                let columns = try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info(?) ORDER BY seqno", arguments: [name])
                #expect(columns == ["message_id", "account_id", "device_id"])
            }
        }
    }

    /// An empty pre-v3 database migrates too (no counter to carry).
    @Test func emptyQueueMigrates() throws {
        let queue = try DatabaseQueue()
        try SQLiteSchema.migrator().migrate(queue)
        try queue.write { db in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM queue_entry") == 0)
            try db.execute(
                sql: "INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at) VALUES (1, 1, ?, 1, 1)",
                arguments: [UUID()])
            #expect(db.lastInsertedRowID == 1)
        }
    }

    /// `relay-v4-hardening` attributes queued entries to their senders, builds the per-sender shares (an account's
    /// copies to itself excluded) and the contact pairs of queued 1:1 messages.
    @Test func hardeningBackfillsSendersSharesAndContacts() throws {
        let queue = try DatabaseQueue()
        let migrator = SQLiteSchema.migrator()
        try migrator.migrate(queue, upTo: "relay-v3-queue-entry-by-message")
        let direct = UUID(), group = UUID()
        try queue.write { db in
            try db.execute(sql: "INSERT INTO account (id, name, created_at) VALUES (1, 'alice', 1), (2, 'bob', 1)")
            for accountId in [1, 2] {
                try db.execute(
                    sql: """
                        INSERT INTO device (account_id, device_id, state, registration_id, identity_key, credential_hash,
                            signed_prekey_id, signed_prekey, signed_prekey_signature, created_at, queue_count, queue_bytes)
                        VALUES (?, 1, 'active', 1, x'05', x'00', 1, x'05', x'00', 1, 0, 0)
                        """, arguments: [accountId])
            }
            try db.execute(
                sql: """
                    INSERT INTO message (id, kind, sender_account, sender_device, conversation, group_id, type, content, server_ts, ref_count)
                    VALUES (?, 'direct', 'alice', 1, 'dm:alice:bob', NULL, 1, x'0102', 1, 1),
                           (?, 'group', 'bob', 1, 'group:x', NULL, 1, x'010203', 1, 2)
                    """, arguments: [direct, group])
            try db.execute(
                sql: """
                    INSERT INTO queue_entry (account_id, device_id, message_id, size, expires_at)
                    VALUES (2, 1, ?, 2, 9), (1, 1, ?, 3, 9), (2, 1, ?, 3, 9)
                    """, arguments: [direct, group, group])
        }
        try migrator.migrate(queue)
        try queue.read { db in
            #expect(try Int64.fetchAll(db, sql: "SELECT sender_id FROM queue_entry ORDER BY seq") == [1, 2, 2])
            let shares = try Row.fetchAll(db, sql: "SELECT * FROM queue_share ORDER BY account_id")
            #expect(shares.map { [$0["account_id"], $0["sender_id"], $0["count"], $0["bytes"]] as [Int64] } == [[1, 2, 1, 3], [2, 1, 1, 2]])
            let contacts = try Row.fetchAll(db, sql: "SELECT account_id, peer_id FROM contact")
            #expect(contacts.map { [$0["account_id"], $0["peer_id"]] as [Int64] } == [[1, 2]])
        }
    }

    /// `relay-pg-v2-hardening` does on PostgreSQL what `relay-v4-hardening` does on SQLite: queued entries get
    /// their senders, the per-sender shares and the contact pairs of queued 1:1 messages are built, and link codes
    /// are kept as their hashes (an open code still works; the clear column is gone).
    @Test(.enabled(if: TestBackend.available.contains(.postgres)))
    func postgresHardeningBackfillsSendersSharesContactsAndCodeHashes() async throws {
        let database = try TestBackend.freshPostgresDatabase(prefix: "m")
        let location = try PostgresLocation(url: database)
        let logger = {
            var logger = Logger(label: "parley-migration-test")
            logger.logLevel = .warning
            return logger
        }()
        let client = PostgresClient(configuration: try location.clientConfiguration(), backgroundLogger: logger)
        let run = Task { await client.run() }
        let direct = UUID(), group = UUID()
        do {
            try await PostgresSchema.migrate(client, schema: location.schema, logger: logger, upTo: "relay-pg-v1")
            try await client.withConnection { connection in
                let statements: [PostgresQuery] = [
                    "INSERT INTO account (id, name, created_at) VALUES (1, 'alice', 1), (2, 'bob', 1)",
                    """
                    INSERT INTO device (account_id, device_id, state, registration_id, identity_key, credential_hash,
                        signed_prekey_id, signed_prekey, signed_prekey_signature, created_at, queue_count, queue_bytes, queue_seq)
                    VALUES (1, 1, 'active', 1, '\\x05', '\\x00', 1, '\\x05', '\\x00', 1, 1, 3, 1),
                           (2, 1, 'active', 1, '\\x05', '\\x00', 1, '\\x05', '\\x00', 1, 2, 5, 2)
                    """,
                    """
                    INSERT INTO message (id, kind, sender_account, sender_device, conversation, group_id, type, content, server_ts, ref_count)
                    VALUES (\(direct), 'direct', 'alice', 1, 'dm:alice:bob', NULL, 1, '\\x0102', 1, 1),
                           (\(group), 'group', 'bob', 1, 'group:x', NULL, 1, '\\x010203', 1, 2)
                    """,
                    """
                    INSERT INTO queue_entry (account_id, device_id, seq, message_id, size, expires_at)
                    VALUES (2, 1, 1, \(direct), 2, 9), (1, 1, 1, \(group), 3, 9), (2, 1, 2, \(group), 3, 9)
                    """,
                    """
                    INSERT INTO link_code (code, account_id, creator_device_id, state, created_at, expires_at)
                    VALUES ('open-code', 1, 1, 'open', 1, 9000000000000)
                    """,
                ]
                for statement in statements { _ = try await connection.query(statement, logger: logger).collect() }
            }
        } catch {
            run.cancel()
            throw error
        }
        run.cancel()

        let store = try #require(try await TestBackend.openStore(database) as? PostgresRelayStore)
        defer { TestBackend.closeLater(store) }
        let (senders, shares, contacts, hashes) = try await store.read { connection in
            let senders = try await connection.query("SELECT sender_id FROM queue_entry ORDER BY account_id DESC, seq", logger: logger)
                .collect().map { try $0.decode(Int64.self) }
            let shares = try await connection.query(
                "SELECT account_id, sender_id, count, bytes FROM queue_share ORDER BY account_id", logger: logger
            ).collect().map { row in
                let (a, b, c, d) = try row.decode((Int64, Int64, Int64, Int64).self)
                return [a, b, c, d]
            }
            let contacts = try await connection.query("SELECT account_id, peer_id FROM contact", logger: logger)
                .collect().map { row in
                    let (a, b) = try row.decode((Int64, Int64).self)
                    return [a, b]
                }
            let hashes = try await connection.query("SELECT code_hash FROM link_code", logger: logger).collect()
                .map { try $0.decode(Data.self) }
            return (senders, shares, contacts, hashes)
        }
        #expect(senders == [1, 2, 2])
        #expect(shares == [[1, 2, 1, 3], [2, 1, 1, 2]])
        #expect(contacts == [[1, 2]])
        #expect(hashes == [Credentials.hash("open-code")])
        #expect(try await store.linkInfo(accountId: 1, code: "open-code", now: 2).state == .open)
        #expect(try await StoreBackendTests.storedLinkCodeColumns(store).columns.contains("code") == false)
    }

    /// `relay-pg-v3-group-roles` does on PostgreSQL what `relay-v5-group-roles` does on SQLite: each existing group's
    /// creator becomes its admin, or, when the creator left, its longest-standing member; every group starts at
    /// version 1. It runs after `relay-pg-v2-hardening`.
    @Test(.enabled(if: TestBackend.available.contains(.postgres)))
    func postgresRolesMigrationGivesEveryExistingGroupAnAdmin() async throws {
        let names = PostgresSchema.migrations.map(\.name)
        #expect(names.firstIndex(of: "relay-pg-v3-group-roles") == names.firstIndex(of: "relay-pg-v2-hardening").map { $0 + 1 })
        #expect(names.firstIndex(of: "relay-pg-v4-kyber-prekeys") == names.firstIndex(of: "relay-pg-v3-group-roles").map { $0 + 1 })
        let database = try TestBackend.freshPostgresDatabase(prefix: "m")
        let location = try PostgresLocation(url: database)
        let logger = {
            var logger = Logger(label: "parley-migration-test")
            logger.logLevel = .warning
            return logger
        }()
        let client = PostgresClient(configuration: try location.clientConfiguration(), backgroundLogger: logger)
        let run = Task { await client.run() }
        let kept = UUID(), orphaned = UUID()
        do {
            try await PostgresSchema.migrate(client, schema: location.schema, logger: logger, upTo: "relay-pg-v2-hardening")
            try await client.withConnection { connection in
                let statements: [PostgresQuery] = [
                    "INSERT INTO account (id, name, created_at) VALUES (1, 'alice', 0), (2, 'bob', 0), (3, 'carol', 0)",
                    "INSERT INTO chat_group (id, creator, created_at) VALUES (\(kept), 'alice', 0), (\(orphaned), 'alice', 0)",
                    """
                    INSERT INTO group_member (group_id, account_id, added_at)
                    VALUES (\(kept), 1, 1), (\(kept), 2, 2), (\(orphaned), 3, 5), (\(orphaned), 2, 7)
                    """,
                ]
                for statement in statements { _ = try await connection.query(statement, logger: logger).collect() }
            }
        } catch {
            run.cancel()
            throw error
        }
        run.cancel()

        let store = try await TestBackend.openStore(database)
        defer { TestBackend.closeLater(store) }
        let keptInfo = try await store.group(kept, viewer: 2)
        #expect(keptInfo.admins == ["alice"])
        #expect(keptInfo.epoch == 1)
        let orphanedInfo = try await store.group(orphaned, viewer: 2)
        #expect(orphanedInfo.members == ["bob", "carol"])
        #expect(orphanedInfo.admins == ["carol"])  // the creator is gone: the longest-standing member
        #expect(orphanedInfo.epoch == 1)
    }

    /// `relay-pg-v9-ack-plans` leaves `parley_ack` planned by key: no sequential scans inside it (the fast-churning
    /// `message` table's statistics made one look cheapest, and it read every dead row three times per ack batch) and
    /// one generic plan per session. Acks still remove what they name (the store suite runs them on this schema).
    @Test(.enabled(if: TestBackend.available.contains(.postgres)))
    func postgresAckFunctionIsPlannedByKey() async throws {
        let names = PostgresSchema.migrations.map(\.name)
        #expect(names.last == "relay-pg-v9-ack-plans")
        let database = try TestBackend.freshPostgresDatabase(prefix: "m")
        let store = try #require(try await TestBackend.openStore(database) as? PostgresRelayStore)
        defer { TestBackend.closeLater(store) }
        let settings = try await store.read { connection in
            try await store.rows(
                connection,
                """
                SELECT unnest(p.proconfig) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname = 'parley_ack' AND n.nspname = \(store.location.schema)
                """
            ).map { try $0.decode(String.self) }
        }
        #expect(Set(settings) == ["enable_seqscan=off", "plan_cache_mode=force_generic_plan"])
    }

    /// Message ids are RFC 9562 version 7: the timestamp in the first 48 bits, so ids of later milliseconds
    /// sort after earlier ones byte-wise (the order SQLite compares blobs in).
    @Test func messageIdsAreTimeOrderedVersion7() {
        var previous: [UInt8] = []
        for millis in stride(from: Int64(1_700_000_000_000), to: 1_700_000_000_050, by: 1) {
            let id = MessageID.make(unixMillis: millis)
            let bytes = withUnsafeBytes(of: id.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 7)
            #expect(bytes[8] >> 6 == 0b10)
            let time = bytes.prefix(6).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(time == UInt64(millis))
            #expect(previous.lexicographicallyPrecedes(bytes))
            previous = bytes
        }
        // Random bits differ between ids of the same millisecond.
        let ids = Set((0..<1_000).map { _ in MessageID.make(unixMillis: 1_700_000_000_000) })
        #expect(ids.count == 1_000)
    }

    /// The message and queue-entry inserts bind through SQLite's C API (`SQLiteRawStatement`): what they store
    /// reads back exactly through GRDB, NULLs and empty blobs included, and a constraint violation is a
    /// `DatabaseError` that leaves nothing behind.

    /// The message and queue-entry inserts bind through SQLite's C API (`SQLiteRawStatement`): what they store
    /// reads back exactly through GRDB, NULLs and empty blobs included, and a constraint violation is a
    /// `DatabaseError` that leaves nothing behind.
    @Test func rawInsertsStoreExactlyTheirValues() throws {
        let queue = try DatabaseQueue()
        try SQLiteSchema.migrator().migrate(queue)
        let id = MessageID.make(unixMillis: 1_700_000_000_123)
        let groupId = UUID()
        let targets = [DeviceAddress(accountId: 7, deviceId: 1), DeviceAddress(accountId: 8, deviceId: 3)]
        let seqs = try queue.write { db in
            try SQLiteRelayStore.insertMessage(
                db, id: id, kind: .group, senderId: 42, senderAccount: "älice-ß", senderDevice: 4_000_000_000,
                conversation: "group:x", groupId: groupId, type: 3, content: Data([0, 1, 2, 255]),
                serverTimestamp: 1_700_000_000_123, clientTimestamp: nil, targets: targets, expiresAt: -5,
                cache: SQLiteCommitCache())
        }
        #expect(seqs.count == 2)
        let row = try #require(try queue.read { db in try Row.fetchOne(db, sql: "SELECT * FROM message") })
        #expect(row["id"] as UUID == id)
        #expect(row["kind"] as String == "group")
        #expect(row["sender_account"] as String == "älice-ß")
        #expect(row["sender_device"] as Int64 == 4_000_000_000)
        #expect(row["conversation"] as String == "group:x")
        #expect(row["group_id"] as UUID? == groupId)
        #expect(row["type"] as Int == 3)
        #expect(row["content"] as Data == Data([0, 1, 2, 255]))
        #expect(row["server_ts"] as Int64 == 1_700_000_000_123)
        #expect(row["client_ts"] as Int64? == nil)
        #expect(row["ref_count"] as Int == 2)
        let entries = try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM queue_entry ORDER BY seq") }
        #expect(entries.map { $0["seq"] as Int64 } == seqs)
        #expect(entries.map { $0["account_id"] as Int64 } == [7, 8])
        #expect(entries.map { $0["device_id"] as Int64 } == [1, 3])
        #expect(entries.map { $0["message_id"] as UUID } == [id, id])
        #expect(entries.map { $0["size"] as Int } == [4, 4])
        #expect(entries.map { $0["expires_at"] as Int64 } == [-5, -5])
        #expect(entries.map { $0["sender_id"] as Int64 } == [42, 42])

        // The same id again: refused by the primary key, and the transaction leaves nothing.
        #expect(throws: DatabaseError.self) {
            try queue.write { db in
                try SQLiteRelayStore.insertMessage(
                    db, id: id, kind: .direct, senderId: 3, senderAccount: "bob", senderDevice: 1, conversation: "dm:a:b",
                    groupId: nil, type: 1, content: Data(), serverTimestamp: 1, clientTimestamp: 2,
                    targets: [DeviceAddress(accountId: 9, deviceId: 1)], expiresAt: 1, cache: SQLiteCommitCache())
            }
        }
        #expect(try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message") } == 1)
        #expect(try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM queue_entry") } == 2)

        // An empty ciphertext and a client timestamp round-trip too.
        let other = MessageID.make(unixMillis: 1)
        _ = try queue.write { db in
            try SQLiteRelayStore.insertMessage(
                db, id: other, kind: .direct, senderId: 3, senderAccount: "bob", senderDevice: 1, conversation: "dm:a:b",
                groupId: nil, type: 1, content: Data(), serverTimestamp: 1, clientTimestamp: 2,
                targets: [DeviceAddress(accountId: 9, deviceId: 1)], expiresAt: 1, cache: SQLiteCommitCache())
        }
        let second = try #require(
            try queue.read { db in try Row.fetchOne(db, sql: "SELECT * FROM message WHERE id = ?", arguments: [other]) })
        #expect(second["content"] as Data == Data())
        #expect(second["group_id"] as UUID? == nil)
        #expect(second["client_ts"] as Int64? == 2)
    }
}
