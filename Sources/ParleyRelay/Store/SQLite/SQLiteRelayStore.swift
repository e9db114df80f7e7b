import Foundation
import GRDB
import ParleyWire

/// `RelayStore` on SQLite: a GRDB `DatabasePool` in WAL mode with `synchronous = FULL`, so a commit
/// is on disk before the relay acknowledges anything.
final class SQLiteRelayStore: RelayStore {
    let pool: DatabasePool
    /// Account ids and device lists for the send path, across transactions (see `SQLiteLookupCache`).
    let lookups = SQLiteLookupCache()
    /// Contact pairs already stored (`SQLiteRelayStore+Contacts`).
    let knownContacts = KnownContacts()
    /// WAL checkpoints on the writer between transactions, not inside commits (`SQLiteCheckpointer`).
    let checkpointer: SQLiteCheckpointer

    init(path: String) throws {
        let checkpointer = SQLiteCheckpointer()
        self.checkpointer = checkpointer
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Statement journals and sorts in memory, not in temporary files (an open and unlink each).
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            // 32 MiB of page cache per connection (SQLite's default is 2 MiB): the queue indexes stay cached.
            try db.execute(sql: "PRAGMA cache_size = -32768")
            try checkpointer.prepare(db)
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try SQLiteSchema.migrator().migrate(pool)
        checkpointer.attach(pool)
    }

    /// A write transaction that may add, remove, activate or change accounts and devices (every write but the
    /// send, ack and last-seen batches): drops the cached lookups first, inside the transaction, so that no
    /// send validated after it sees a device list from before it.
    func writeChangingLookups<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let lookups = self.lookups
        return try await pool.write { db in
            lookups.clear()
            return try body(db)
        }
    }

    /// Closes the pool (checkpoints the WAL), on a thread of its own.
    ///
    /// `DatabasePool.close()` blocks until every reader is released, and an async read releases its reader
    /// only when its task resumes on Swift's cooperative pool, which has one thread per core. Blocking a
    /// cooperative thread here deadlocked a process in which as many relays stopped at once as it has
    /// cores (two on a 2-core machine; one where a single core is available).
    func close() async throws {
        let pool = self.pool
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                do {
                    try pool.close()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "parley-relay-store-close"
            thread.start()
        }
    }

    // MARK: helpers used by the extensions

    static func accountId(_ db: Database, name: String) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT id FROM account WHERE name = ?", arguments: [name])
    }

    static func requireAccountId(_ db: Database, name: String) throws -> Int64 {
        guard let id = try accountId(db, name: name) else { throw RelayError.notFound("unknown account") }
        return id
    }

    /// Active devices of an account: device id -> registration id.
    static func activeDevices(_ db: Database, accountId: Int64) throws -> [UInt32: UInt32] {
        var result: [UInt32: UInt32] = [:]
        let statement = try db.cachedStatement(
            sql: "SELECT device_id, registration_id FROM device WHERE account_id = ? AND state = 'active'")
        let rows = try Row.fetchCursor(statement, arguments: [accountId])
        while let row = try rows.next() {
            let deviceId: Int64 = row[0]
            let registrationId: Int64 = row[1]
            result[UInt32(truncatingIfNeeded: deviceId)] = UInt32(truncatingIfNeeded: registrationId)
        }
        return result
    }

    static func insertOneTimePreKeys(_ db: Database, _ address: DeviceAddress, _ keys: [OneTimePreKey]) throws {
        for key in keys {
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO one_time_prekey (account_id, device_id, key_id, public_key)
                    VALUES (?, ?, ?, ?)
                    """,
                arguments: [address.accountId, Int64(address.deviceId), Int64(key.keyId), key.publicKey])
        }
    }

    static func insertDevice(
        _ db: Database, accountId: Int64, deviceId: UInt32, state: String, keys: NewDeviceKeys, credentialHash: Data,
        now: Int64
    ) throws {
        try db.execute(
            sql: """
                INSERT INTO device (account_id, device_id, state, registration_id, identity_key, name, credential_hash,
                    signed_prekey_id, signed_prekey, signed_prekey_signature, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                accountId, Int64(deviceId), state, Int64(keys.registrationId), keys.identityKey, keys.name,
                credentialHash, Int64(keys.signedPreKey.keyId), keys.signedPreKey.publicKey,
                keys.signedPreKey.signature, now,
            ])
        let address = DeviceAddress(accountId: accountId, deviceId: deviceId)
        try insertOneTimePreKeys(db, address, keys.oneTimePreKeys)
        try insertKyberPreKeys(db, address, lastResort: keys.kyberLastResortPreKey, oneTime: [])
    }

    // MARK: accounts and devices

    func createAccount(name: String, device: NewDeviceKeys, credentialHash: Data, recoveryCodeHash: String?, now: Int64) async throws
        -> Int64
    {
        try await writeChangingLookups { db in
            if try Self.accountId(db, name: name) != nil { throw RelayError.nameTaken }
            try db.execute(sql: "INSERT INTO account (name, created_at) VALUES (?, ?)", arguments: [name, now])
            let accountId = db.lastInsertedRowID
            try Self.insertDevice(
                db, accountId: accountId, deviceId: 1, state: "active", keys: device, credentialHash: credentialHash,
                now: now)
            if let recoveryCodeHash {
                try db.execute(
                    sql: "INSERT INTO account_recovery (account_id, code_hash, created_at) VALUES (?, ?, ?)",
                    arguments: [accountId, recoveryCodeHash, now])
            }
            return accountId
        }
    }

    func recoveryAttempt(name: String, now: Int64, windowMillis: Int64, maxAttempts: Int) async throws -> RecoveryChallenge {
        try await pool.write { db in
            guard let accountId = try Self.accountId(db, name: name) else { throw RelayError.notFound("unknown account") }
            guard let row = try Row.fetchOne(
                db, sql: "SELECT code_hash, window_start, attempts FROM account_recovery WHERE account_id = ?", arguments: [accountId])
            else { throw RelayError.recoveryRefused("this account has no recovery code") }
            let windowStart: Int64 = row["window_start"]
            let attempts: Int64 = row["attempts"]
            if attempts > 0, now < windowStart + windowMillis {
                guard attempts < Int64(maxAttempts) else {
                    throw RelayError.rateLimitedFor(seconds: Int((windowStart + windowMillis - now + 999) / 1000))
                }
                try db.execute(sql: "UPDATE account_recovery SET attempts = attempts + 1 WHERE account_id = ?", arguments: [accountId])
            } else {
                try db.execute(
                    sql: "UPDATE account_recovery SET window_start = ?, attempts = 1 WHERE account_id = ?", arguments: [now, accountId])
            }
            return RecoveryChallenge(accountId: accountId, codeHash: row["code_hash"])
        }
    }

    func recoverAccount(
        _ challenge: RecoveryChallenge, newCodeHash: String, device: NewDeviceKeys, credentialHash: Data, now: Int64
    ) async throws -> [UInt32] {
        try await writeChangingLookups { db in
            let current = try String.fetchOne(
                db, sql: "SELECT code_hash FROM account_recovery WHERE account_id = ?", arguments: [challenge.accountId])
            guard current == challenge.codeHash else { throw RelayError.recoveryRefused("the account was recovered meanwhile") }
            let removed = try Int64.fetchAll(
                db, sql: "SELECT device_id FROM device WHERE account_id = ? ORDER BY device_id", arguments: [challenge.accountId])
            for deviceId in removed { try Self.deleteDevice(db, accountId: challenge.accountId, deviceId: deviceId) }
            // Codes the old devices made (open or claimed) must not bring a device into the recovered account.
            try db.execute(sql: "DELETE FROM link_code WHERE account_id = ?", arguments: [challenge.accountId])
            try Self.insertDevice(
                db, accountId: challenge.accountId, deviceId: 1, state: "active", keys: device, credentialHash: credentialHash, now: now)
            try db.execute(
                sql: "UPDATE account_recovery SET code_hash = ?, created_at = ? WHERE account_id = ?",
                arguments: [newCodeHash, now, challenge.accountId])
            return removed.map { UInt32(truncatingIfNeeded: $0) }
        }
    }

    func deviceAuth(account: String, deviceId: UInt32) async throws -> StoredDeviceAuth? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT a.id AS account_id, d.credential_hash, d.state FROM device d JOIN account a ON a.id = d.account_id
                        WHERE a.name = ? AND d.device_id = ?
                        """,
                    arguments: [account, Int64(deviceId)])
            else { return nil }
            let state: String = row["state"]
            return StoredDeviceAuth(
                accountId: row["account_id"], account: account, deviceId: deviceId,
                credentialHash: row["credential_hash"], active: state == "active")
        }
    }

    func devices(account: String) async throws -> [DeviceInfo] {
        try await pool.read { db in
            let accountId = try Self.requireAccountId(db, name: account)
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT device_id, registration_id, name, created_at, last_seen FROM device
                    WHERE account_id = ? AND state = 'active' ORDER BY device_id
                    """,
                arguments: [accountId])
            return rows.map { row in
                let deviceId: Int64 = row["device_id"]
                let registrationId: Int64 = row["registration_id"]
                return DeviceInfo(
                    deviceId: UInt32(truncatingIfNeeded: deviceId),
                    registrationId: UInt32(truncatingIfNeeded: registrationId), name: row["name"],
                    createdAt: row["created_at"], lastSeen: row["last_seen"])
            }
        }
    }

    func removeDevice(accountId: Int64, deviceId: UInt32) async throws {
        try await writeChangingLookups { db in
            let exists = try Bool.fetchOne(
                db, sql: "SELECT 1 FROM device WHERE account_id = ? AND device_id = ?",
                arguments: [accountId, Int64(deviceId)]) ?? false
            guard exists else { throw RelayError.notFound("unknown device") }
            try Self.deleteDevice(db, accountId: accountId, deviceId: Int64(deviceId))
        }
    }

    /// Deletes a device with its queue (releasing the messages no other queue holds) and its link codes; its
    /// prekeys and push subscription go with it (foreign keys).
    static func deleteDevice(_ db: Database, accountId: Int64, deviceId: Int64) throws {
        let messageIds = try Data.fetchAll(
            db, sql: "SELECT message_id FROM queue_entry WHERE account_id = ? AND device_id = ?", arguments: [accountId, deviceId])
        try db.execute(sql: "DELETE FROM queue_entry WHERE account_id = ? AND device_id = ?", arguments: [accountId, deviceId])
        try releaseMessages(db, messageIds)
        try db.execute(sql: "DELETE FROM link_code WHERE account_id = ? AND device_id = ?", arguments: [accountId, deviceId])
        try db.execute(sql: "DELETE FROM device WHERE account_id = ? AND device_id = ?", arguments: [accountId, deviceId])
    }

    func touchDevice(_ address: DeviceAddress, now: Int64) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE device SET last_seen = ? WHERE account_id = ? AND device_id = ?",
                arguments: [now, address.accountId, Int64(address.deviceId)])
        }
    }

    func touchDevices(_ touches: [DeviceTouch]) async throws {
        try await pool.write { db in
            let update = try db.cachedStatement(sql: "UPDATE device SET last_seen = ? WHERE account_id = ? AND device_id = ?")
            for touch in touches {
                try update.execute(arguments: [touch.now, touch.address.accountId, Int64(touch.address.deviceId)])
            }
        }
    }

    func lastSeen(account: String) async throws -> Int64? {
        try await pool.read { db in
            let accountId = try Self.requireAccountId(db, name: account)
            return try Int64.fetchOne(
                db, sql: "SELECT MAX(last_seen) FROM device WHERE account_id = ? AND state = 'active'",
                arguments: [accountId])
        }
    }
}
