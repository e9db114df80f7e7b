import Foundation
import Logging
import ParleyWire
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// `RelayStore` on PostgreSQL, through postgres-nio's `PostgresClient` pool. Several relay nodes share one
/// database; each node is one `PostgresRelayStore` with its own node id (see `PostgresCluster`).
///
/// Every method is one transaction (READ COMMITTED). Where two nodes could race, rows are locked, always in the
/// same order so that transactions do not deadlock: device rows first (`FOR NO KEY UPDATE`, ordered by
/// account and device id), then queue entries, then message rows (ordered by id). A transaction PostgreSQL
/// aborts anyway (deadlock, serialization failure) is run again. Every commit waits for its WAL flush
/// (`synchronous_commit = on`, set on every connection), so an acknowledgement means durable on the primary.
///
/// Queue sequence numbers are per device, taken from `device.queue_seq` under that row's lock: for one device,
/// a larger number is always committed later, and there are no gaps (see `QueuedEnvelope.previousSeq`).
/// Entries committed for a device connected to another node are announced to that node in the same
/// transaction (`pg_notify`, ids only: the other node reads the envelopes from the tables).
final class PostgresRelayStore: RelayStore {
    let location: PostgresLocation
    /// This node's id (`relay_node.id`); notifications go to the other nodes only.
    let nodeId: Int64
    let logger: Logger
    /// Fails this store's statements when their connection closes (one close callback per connection).
    let closeWatch = ConnectionCloseWatch()
    /// Whether the database is reachable, as the cluster's listener last saw it: while it is not, every method
    /// fails at once with `RelayError.unavailable` (503) instead of waiting for a pool connection.
    let health = PostgresHealth()
    var isAvailable: Bool { health.isUp }
    /// Contact pairs known to be stored (a commit skips their insert; see `KnownContacts`).
    let knownContacts = KnownContacts()
    /// The connection pool and the task running it; replaced after the database was lost (`renewPool`).
    private let pool: NIOLockedValueBox<Pool>

    private struct Pool {
        let client: PostgresClient
        let run: Task<Void, Never>
        var closed = false
    }

    private init(location: PostgresLocation, nodeId: Int64, logger: Logger, pool: Pool) {
        self.location = location
        self.nodeId = nodeId
        self.logger = logger
        self.pool = NIOLockedValueBox(pool)
    }

    var client: PostgresClient { pool.withLockedValue { $0.client } }

    private static func makePool(_ location: PostgresLocation, logger: Logger) throws -> Pool {
        // The pool's own messages (connections failing and retried) only from errors up; the node reports losing
        // the database itself.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .error)
        let client = PostgresClient(configuration: try location.clientConfiguration(), backgroundLogger: poolLogger)
        // Detached: a pool made while the relay runs (renewPool) must not inherit the service group's graceful
        // shutdown (PostgresClient.run ends at graceful shutdown), it is closed by `close()` after everything else.
        return Pool(client: client, run: Task.detached { await client.run() })
    }

    /// Connects, migrates the schema and returns the store of a new node.
    static func open(_ location: PostgresLocation, logger: Logger) async throws -> PostgresRelayStore {
        let pool = try makePool(location, logger: logger)
        do {
            try await PostgresSchema.migrate(pool.client, schema: location.schema, logger: logger)
        } catch {
            pool.run.cancel()
            throw error
        }
        let nodeId = Int64.random(in: 1...Int64.max)
        return PostgresRelayStore(location: location, nodeId: nodeId, logger: logger, pool: pool)
    }

    /// A fresh pool, after the database came back: the old one's connections are gone, and it would wait out its
    /// connection backoff (up to a minute after a long outage) before trying again. Calls still on the old pool
    /// fail (503) as it closes.
    func renewPool() {
        guard let fresh = try? Self.makePool(location, logger: logger) else { return }
        let old = pool.withLockedValue { pool -> Pool? in
            guard !pool.closed else { return nil }
            defer { pool = fresh }
            return pool
        }
        guard let old else {
            fresh.run.cancel()
            return
        }
        old.run.cancel()
    }

    /// Closes the pool and waits, suspended (no thread is blocked), until it has closed its connections: the pool's
    /// run ends once the connections leased to calls still in flight are returned.
    func close() async throws {
        let run = pool.withLockedValue { pool -> Task<Void, Never> in
            pool.closed = true
            return pool.run
        }
        run.cancel()
        await run.value
    }

    // MARK: running statements

    /// Runs `body` on a pooled connection (reads).
    @discardableResult
    func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        guard health.isUp else { throw RelayError.unavailable }
        do {
            return try await leased(body)
        } catch {
            throw Self.mapped(error)
        }
    }

    /// Runs `body` in one transaction; again (up to `PostgresStoreLimits.transactionRetries` times) when
    /// PostgreSQL aborted it to break a deadlock or a serialization conflict.
    @discardableResult
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await retrying { [self] in try await leased { [self] connection in try await inTransaction(connection, body) } }
    }

    /// Runs `body`, a single statement, outside an explicit transaction (the statement is its own transaction: no
    /// BEGIN and COMMIT round trips); again, like `transaction`, when PostgreSQL aborted it to break a deadlock or a
    /// serialization conflict.
    @discardableResult
    func statement<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await retrying { [self] in try await leased(body) }
    }

    /// Runs `attempt` (503 at once while the database is down); again, up to `PostgresStoreLimits.transactionRetries`
    /// times, when PostgreSQL aborted it to break a deadlock or a serialization conflict. Other errors are mapped.
    private func retrying<T: Sendable>(_ attempt: () async throws -> T) async throws -> T {
        guard health.isUp else { throw RelayError.unavailable }
        var retries = 0
        while true {
            do {
                return try await attempt()
            } catch {
                if retries < PostgresStoreLimits.transactionRetries, Self.isRetryable(error) {
                    retries += 1
                    continue
                }
                throw Self.mapped(error)
            }
        }
    }

    /// Leases a pool connection for `body`, waiting at most `PostgresStoreLimits.leaseTimeoutMilliseconds` for one.
    /// While PostgreSQL is down the pool keeps trying to connect for a minute before it fails a waiting request; the
    /// node answers 503 at once instead. Once a connection is leased, `body` runs to its end (so its outcome is known).
    private func leased<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let gate = LeaseGate()
        let client = self.client
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                do {
                    return try await client.withConnection { connection in
                        guard gate.lease() else { throw RelayError.unavailable }
                        return try await body(connection)
                    }
                } catch {
                    // No connection came: whatever the pool failed with (it gave up connecting while PostgreSQL is
                    // down, or it was replaced by `renewPool` under the request), nothing ran.
                    guard gate.isLeased else { throw RelayError.unavailable }
                    throw error
                }
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(PostgresStoreLimits.leaseTimeoutMilliseconds))
                if gate.expire() { throw RelayError.unavailable }
                return nil
            }
            while let result = try await group.next() {
                if let result {
                    group.cancelAll()
                    return result
                }
            }
            throw RelayError.unavailable
        }
    }

    /// BEGIN, `body`, COMMIT on one connection; ROLLBACK when `body` throws. Every statement goes through `rows`, so
    /// none of them waits forever on a connection that closed (postgres-nio's own `withTransaction` writes its
    /// ROLLBACK to the connection whose failure it is handling: written after the channel closed, that statement
    /// never completes, and the call, its pool lease and everything waiting on it hung for good). A connection
    /// whose ROLLBACK failed is closed, so that the pool never hands out a connection left inside a transaction.
    private func inTransaction<T: Sendable>(
        _ connection: PostgresConnection, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await rows(connection, "BEGIN")
        let value: T
        do {
            value = try await body(connection)
        } catch {
            do {
                try await rows(connection, "ROLLBACK")
            } catch {
                try? await connection.close()
            }
            throw error
        }
        try await rows(connection, "COMMIT")
        return value
    }

    /// Runs a statement and collects its rows. Fails with `PostgresStoreError.connectionClosed` as soon as the
    /// connection has closed, whether or not postgres-nio ever completes the statement: a statement written to a
    /// channel that had already closed (the server went away an instant before) is dropped by the channel without
    /// failing its promise (postgres-nio 1.33; its fix, vapor/postgres-nio#487, was reverted), so awaiting it
    /// alone would wait forever. (`ConnectionCloseWatch`: one close callback per connection, not per statement.)
    @discardableResult
    func rows(_ connection: PostgresConnection, _ query: PostgresQuery) async throws -> [PostgresRow] {
        try await closeWatch.guarded(connection, connection.query(query, logger: logger)).rows
    }

    /// What went wrong, for a log line: the error's type, postgres-nio's error code and the SQLSTATE (never the
    /// statement or its values).
    static func summary(_ error: any Error) -> String {
        let error = unwrapped(error)
        if let psql = error as? PSQLError {
            return "PSQLError \(psql.code)" + (sqlState(psql).map { " SQLSTATE \($0)" } ?? "")
        }
        if let relay = error as? RelayError { return "RelayError \(relay.body.code)" }
        return "\(type(of: error))"
    }

    /// SQLSTATE of a server error.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// The error a transaction failed with: postgres-nio wraps it (the closure's error, or that of BEGIN, COMMIT or
    /// ROLLBACK).
    static func unwrapped(_ error: any Error) -> any Error {
        guard let transaction = error as? PostgresTransactionError else { return error }
        return transaction.closureError ?? transaction.commitError ?? transaction.beginError ?? transaction.rollbackError ?? error
    }

    /// Deadlock detected, serialization failure: the whole transaction may simply run again.
    static func isRetryable(_ error: any Error) -> Bool {
        let state = sqlState(unwrapped(error))
        return state == "40P01" || state == "40001"
    }

    /// Errors for the caller: a `RelayError` as is; a lost or refused database connection becomes `.unavailable`
    /// (503: nothing was stored, retry later); anything else stays an internal failure.
    static func mapped(_ error: any Error) -> any Error {
        let error = unwrapped(error)
        if error is RelayError { return error }
        if case PostgresStoreError.connectionClosed? = error as? PostgresStoreError { return RelayError.unavailable }
        if let psql = error as? PSQLError {
            switch psql.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                .queryCancelled:
                return RelayError.unavailable
            case .server:
                // 08: connection exception; 57P: operator intervention (shutdown, restart, cannot connect now);
                // 53300: too many connections.
                if let state = sqlState(psql), state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" {
                    return RelayError.unavailable
                }
                return error
            default:
                return error
            }
        }
        if error is ChannelError || error is IOError { return RelayError.unavailable }
        return error
    }

    // MARK: helpers used by the extensions

    static func accountId(_ store: PostgresRelayStore, _ connection: PostgresConnection, name: String) async throws -> Int64? {
        try await store.rows(connection, "SELECT id FROM account WHERE name = \(name)").first?.decode(Int64.self)
    }

    func requireAccountId(_ connection: PostgresConnection, name: String) async throws -> Int64 {
        guard let id = try await Self.accountId(self, connection, name: name) else { throw RelayError.notFound("unknown account") }
        return id
    }

    /// Locks device rows in the one global order (account id, device id): every transaction that changes device
    /// rows of more than one device takes them this way first, so two of them never wait for each other in a
    /// cycle.
    func lockDevices(_ connection: PostgresConnection, _ addresses: some Collection<DeviceAddress>) async throws {
        guard !addresses.isEmpty else { return }
        let unique = Array(Set(addresses))
        try await rows(
            connection,
            """
            SELECT 1 FROM device d JOIN unnest(\(unique.map(\.accountId)), \(unique.map { Int64($0.deviceId) })) AS t(a, v)
                ON d.account_id = t.a AND d.device_id = t.v
            ORDER BY d.account_id, d.device_id FOR NO KEY UPDATE OF d
            """)
    }

    func insertOneTimePreKeys(_ connection: PostgresConnection, _ address: DeviceAddress, _ keys: [OneTimePreKey]) async throws {
        guard !keys.isEmpty else { return }
        // One statement cannot update a row twice: the last key of a repeated id wins, as in the SQLite store.
        var byId: [UInt32: Data] = [:]
        for key in keys { byId[key.keyId] = key.publicKey }
        let ids = byId.keys.sorted()
        let publicKeys = ids.map { ByteBuffer(bytes: byId[$0] ?? Data()) }
        try await rows(
            connection,
            """
            INSERT INTO one_time_prekey (account_id, device_id, key_id, public_key)
            SELECT \(address.accountId), \(Int64(address.deviceId)), k, p FROM unnest(\(ids.map { Int64($0) }), \(publicKeys)) AS t(k, p)
            ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key
            """)
    }

    func insertDevice(
        _ connection: PostgresConnection, accountId: Int64, deviceId: UInt32, state: String, keys: NewDeviceKeys,
        credentialHash: Data, now: Int64
    ) async throws {
        try await rows(
            connection,
            """
            INSERT INTO device (account_id, device_id, state, registration_id, identity_key, name, credential_hash,
                signed_prekey_id, signed_prekey, signed_prekey_signature, created_at)
            VALUES (\(accountId), \(Int64(deviceId)), \(state), \(Int64(keys.registrationId)), \(keys.identityKey),
                \(keys.name), \(credentialHash), \(Int64(keys.signedPreKey.keyId)), \(keys.signedPreKey.publicKey),
                \(keys.signedPreKey.signature), \(now))
            """)
        let address = DeviceAddress(accountId: accountId, deviceId: deviceId)
        try await insertOneTimePreKeys(connection, address, keys.oneTimePreKeys)
        try await insertKyberPreKeys(connection, address, lastResort: keys.kyberLastResortPreKey, oneTime: [])
    }

    // MARK: accounts and devices

    func createAccount(name: String, device: NewDeviceKeys, credentialHash: Data, recoveryCodeHash: String?, now: Int64) async throws
        -> Int64
    {
        try await transaction { [self] connection in
            guard
                let accountId = try await rows(
                    connection,
                    "INSERT INTO account (name, created_at) VALUES (\(name), \(now)) ON CONFLICT (name) DO NOTHING RETURNING id"
                ).first?.decode(Int64.self)
            else { throw RelayError.nameTaken }
            try await insertDevice(
                connection, accountId: accountId, deviceId: 1, state: "active", keys: device, credentialHash: credentialHash,
                now: now)
            if let recoveryCodeHash {
                try await rows(
                    connection,
                    "INSERT INTO account_recovery (account_id, code_hash, created_at) VALUES (\(accountId), \(recoveryCodeHash), \(now))")
            }
            return accountId
        }
    }

    func recoveryAttempt(name: String, now: Int64, windowMillis: Int64, maxAttempts: Int) async throws -> RecoveryChallenge {
        try await transaction { [self] connection in
            let accountId = try await requireAccountId(connection, name: name)
            guard
                let row = try await rows(
                    connection,
                    "SELECT code_hash, window_start, attempts FROM account_recovery WHERE account_id = \(accountId) FOR UPDATE"
                ).first
            else { throw RelayError.recoveryRefused("this account has no recovery code") }
            let (codeHash, windowStart, attempts) = try row.decode((String, Int64, Int64).self)
            if attempts > 0, now < windowStart + windowMillis {
                guard attempts < Int64(maxAttempts) else {
                    throw RelayError.rateLimitedFor(seconds: Int((windowStart + windowMillis - now + 999) / 1000))
                }
                try await rows(connection, "UPDATE account_recovery SET attempts = attempts + 1 WHERE account_id = \(accountId)")
            } else {
                try await rows(
                    connection, "UPDATE account_recovery SET window_start = \(now), attempts = 1 WHERE account_id = \(accountId)")
            }
            return RecoveryChallenge(accountId: accountId, codeHash: codeHash)
        }
    }

    func recoverAccount(
        _ challenge: RecoveryChallenge, newCodeHash: String, device: NewDeviceKeys, credentialHash: Data, now: Int64
    ) async throws -> [UInt32] {
        let accountId = challenge.accountId
        return try await transaction { [self] connection in
            let current = try await rows(
                connection, "SELECT code_hash FROM account_recovery WHERE account_id = \(accountId) FOR UPDATE"
            ).first?.decode(String.self)
            guard current == challenge.codeHash else { throw RelayError.recoveryRefused("the account was recovered meanwhile") }
            let removed = try await rows(
                connection, "SELECT device_id FROM device WHERE account_id = \(accountId) ORDER BY device_id"
            ).map { UInt32(truncatingIfNeeded: try $0.decode(Int64.self)) }
            try await lockDevices(connection, removed.map { DeviceAddress(accountId: accountId, deviceId: $0) })
            for deviceId in removed {
                let released = try await rows(
                    connection,
                    "DELETE FROM queue_entry WHERE account_id = \(accountId) AND device_id = \(Int64(deviceId)) RETURNING message_id"
                ).map { try $0.decode(UUID.self) }
                try await releaseMessages(connection, released)
            }
            try await rows(connection, "DELETE FROM link_code WHERE account_id = \(accountId)")
            try await rows(connection, "DELETE FROM device WHERE account_id = \(accountId)")
            try await insertDevice(
                connection, accountId: accountId, deviceId: 1, state: "active", keys: device, credentialHash: credentialHash, now: now)
            try await rows(
                connection,
                "UPDATE account_recovery SET code_hash = \(newCodeHash), created_at = \(now) WHERE account_id = \(accountId)")
            return removed
        }
    }

    func deviceAuth(account: String, deviceId: UInt32) async throws -> StoredDeviceAuth? {
        try await read { [self] connection in
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT a.id, d.credential_hash, d.state FROM device d JOIN account a ON a.id = d.account_id
                    WHERE a.name = \(account) AND d.device_id = \(Int64(deviceId))
                    """
                ).first
            else { return nil }
            let (accountId, hash, state) = try row.decode((Int64, Data, String).self)
            return StoredDeviceAuth(
                accountId: accountId, account: account, deviceId: deviceId, credentialHash: hash, active: state == "active")
        }
    }

    func devices(account: String) async throws -> [DeviceInfo] {
        try await read { [self] connection in
            let accountId = try await requireAccountId(connection, name: account)
            return try await rows(
                connection,
                """
                SELECT device_id, registration_id, name, created_at, last_seen FROM device
                WHERE account_id = \(accountId) AND state = 'active' ORDER BY device_id
                """
            ).map { row in
                let (deviceId, registrationId, name, createdAt, lastSeen) = try row.decode((Int64, Int64, String?, Int64, Int64?).self)
                return DeviceInfo(
                    deviceId: UInt32(truncatingIfNeeded: deviceId), registrationId: UInt32(truncatingIfNeeded: registrationId),
                    name: name, createdAt: createdAt, lastSeen: lastSeen)
            }
        }
    }

    func removeDevice(accountId: Int64, deviceId: UInt32) async throws {
        let address = DeviceAddress(accountId: accountId, deviceId: deviceId)
        try await transaction { [self] connection in
            let exists = try await rows(
                connection,
                """
                SELECT 1 FROM device WHERE account_id = \(accountId) AND device_id = \(Int64(deviceId)) FOR NO KEY UPDATE
                """)
            guard !exists.isEmpty else { throw RelayError.notFound("unknown device") }
            let removed = try await rows(
                connection,
                """
                DELETE FROM queue_entry WHERE account_id = \(accountId) AND device_id = \(Int64(deviceId))
                RETURNING message_id
                """
            ).map { try $0.decode(UUID.self) }
            try await releaseMessages(connection, removed)
            try await rows(connection, "DELETE FROM link_code WHERE account_id = \(accountId) AND device_id = \(Int64(deviceId))")
            try await rows(connection, "DELETE FROM device WHERE account_id = \(accountId) AND device_id = \(Int64(address.deviceId))")
        }
    }

    func touchDevice(_ address: DeviceAddress, now: Int64) async throws {
        try await touchDevices([DeviceTouch(address: address, now: now)])
    }

    func touchDevices(_ touches: [DeviceTouch]) async throws {
        var latest: [DeviceAddress: Int64] = [:]
        for touch in touches { latest[touch.address] = max(latest[touch.address] ?? .min, touch.now) }
        guard !latest.isEmpty else { return }
        let addresses = Array(latest.keys)
        try await transaction { [self, latest] connection in
            try await lockDevices(connection, addresses)
            try await rows(
                connection,
                """
                UPDATE device d SET last_seen = t.n
                FROM unnest(\(addresses.map(\.accountId)), \(addresses.map { Int64($0.deviceId) }), \(addresses.map { latest[$0] ?? 0 }))
                    AS t(a, v, n)
                WHERE d.account_id = t.a AND d.device_id = t.v
                """)
        }
    }

    func lastSeen(account: String) async throws -> Int64? {
        try await read { [self] connection in
            let accountId = try await requireAccountId(connection, name: account)
            return try await rows(
                connection, "SELECT MAX(last_seen) FROM device WHERE account_id = \(accountId) AND state = 'active'"
            ).first?.decode(Int64?.self) ?? nil
        }
    }
}

/// Decides, once, whether a pool connection came in time (`lease`) or the wait timed out (`expire`).
final class LeaseGate: Sendable {
    private enum State { case waiting, leased, expired }
    private let state = NIOLockedValueBox(State.waiting)

    /// True if the connection may be used (the wait had not timed out).
    func lease() -> Bool {
        state.withLockedValue { state in
            guard state == .waiting else { return false }
            state = .leased
            return true
        }
    }

    /// True once a connection was leased (the call's body ran, or runs).
    var isLeased: Bool { state.withLockedValue { $0 == .leased } }

    /// True if the wait timed out before a connection came.
    func expire() -> Bool {
        state.withLockedValue { state in
            guard state == .waiting else { return false }
            state = .expired
            return true
        }
    }
}

/// Whether the database is reachable, as seen by the node's listener connection.
final class PostgresHealth: Sendable {
    private let up = NIOLockedValueBox(true)

    var isUp: Bool { up.withLockedValue { $0 } }

    func set(_ value: Bool) {
        up.withLockedValue { $0 = value }
    }
}
