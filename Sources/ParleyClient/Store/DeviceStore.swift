import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// One device's local store: a single SQLite file holding its identity, prekeys, sessions,
/// sender keys, contacts, conversations and message history.
///
/// * The file is opened through one GRDB `DatabaseQueue` (one connection, all access
///   serialised) in WAL mode with `synchronous = FULL`, `secure_delete = ON` and
///   `temp_store = MEMORY`. It and its `-wal`/`-shm` files have mode 0600. After key material
///   is deleted (and every `WALScrubber.replacementsPerScrub` replaced key records) the WAL is
///   checkpointed and truncated, so old page images of those keys do not stay in `-wal`.
/// * With a passphrase, every private key, session record, sender-key record and message body
///   is sealed (`ValueProtection`); without one they are stored in the clear. The key rows
///   (sessions, sender keys, prekeys) are versioned against rollback (`RollbackLedger`).
/// * It implements all the ParleyProtocol store protocols. Each method is atomic on its own; run
///   a whole protocol operation (for example `SessionCipher.decrypt` plus storing the message)
///   inside `transaction(_:)` to make all its writes commit together or not at all.
///
/// Thread-safe: calls from several threads are serialised on the connection's queue. Open one
/// `DeviceStore` per file at a time: a sealed store's search index lives in its connection's
/// memory and does not see rows written through another connection.
public final class DeviceStore: Sendable {
    /// The database file.
    public let path: String
    let queue: DatabaseQueue
    let protection: ValueProtection
    let ledger: RollbackLedger
    let scrubber = WALScrubber()
    let clock: StoreClock

    private init(path: String, queue: DatabaseQueue, protection: ValueProtection, ledger: RollbackLedger, clock: @escaping StoreClock) {
        self.path = path
        self.queue = queue
        self.protection = protection
        self.ledger = ledger
        self.clock = clock
    }

    /// Whether secret values are sealed under a passphrase.
    public var isSealed: Bool { protection.isSealed }

    /// The key this sealed store's values are sealed under (nil for an unsealed store): what
    /// `open(at:unlock: .key(...))` takes to open it again without Argon2id. Keep it only where the
    /// user's own processes can reach it (`parley unlock` puts it in the kernel's session keyring).
    public var storeKey: StoreKey? {
        if case .sealed(let key) = protection { return StoreKey(key) }
        return nil
    }

    // MARK: passphrase change

    /// Makes `newPassphrase` the one that opens this sealed store (the old one stops working).
    ///
    /// The store key the values are sealed under stays the same: Argon2id (at `cost`, with a fresh salt)
    /// turns the new passphrase into a key-encryption key, the store key is sealed under it (`wrapped_key`),
    /// and the new parameters, salt and wrapped key replace the old ones in **one SQLite transaction**: a
    /// crash or an error half-way leaves the old passphrase working, a commit makes the new one work, never
    /// neither. The WAL is then checkpointed and truncated so the old salt and wrapped key leave `-wal`
    /// (`secure_delete` zeroes their pages in the database). An unsealed store: `notSealed` (sealing an
    /// existing unsealed store is not supported: create a sealed one).
    public func changePassphrase(to newPassphrase: Passphrase, cost: KeyDerivationCost = .standard) throws(DeviceStoreError) {
        try changePassphrase(to: newPassphrase, cost: cost, interruptAfter: nil)
    }

    /// `interruptAfter`: tests only, fails the transaction after that many of the rows are written.
    func changePassphrase(to newPassphrase: Passphrase, cost: KeyDerivationCost, interruptAfter: Int?) throws(DeviceStoreError) {
        guard case .sealed(let storeKey) = protection else { throw .notSealed }
        // Argon2id runs before the write transaction, not holding the store's lock for it.
        let parameters = try KeyDerivationParameters.fresh(cost: cost)
        let keyEncryptionKey = try parameters.deriveKey(from: newPassphrase)
        let wrapped = try ValueProtection.seal(storeKey, key: keyEncryptionKey, context: StoreMetadata.wrappedKeyContext)
        try write { db in
            try StoreMetadata.putPassphrase(db, parameters: parameters, wrapped: wrapped, interruptAfter: interruptAfter)
        }
        try scrub()
    }

    // MARK: create and open

    /// Creates a new store at `path` (which must not exist) for a device with `identity` and
    /// `registrationId`. With `passphrase`, derives the store key with Argon2id at `cost` and
    /// seals secret values; without, stores them in the clear.
    public static func create(
        at path: String, identity: IdentityKeyPair, registrationId: UInt32, passphrase: Passphrase? = nil,
        cost: KeyDerivationCost = .standard, clock: @escaping StoreClock = SystemStoreClock.now
    ) throws(DeviceStoreError) -> DeviceStore {
        let files = StoreFiles(path: path)
        try files.createExclusive()
        let queue: DatabaseQueue
        do {
            queue = try openQueue(files)
        } catch {
            files.removeAll()
            throw error
        }
        do {
            let (protection, ledger) = try run {
                try StoreSchema.migrator().migrate(queue)
                return try queue.write { db in
                    let protection = try StoreMetadata.initialise(db, passphrase: passphrase, cost: cost)
                    let ledger = try RollbackLedger(protection: protection)
                    try ledger.save(db, .empty)
                    let sealed = try protection.protect(identity.privateKey.rawBytes(), context: SealContext.localIdentity)
                    try db.execute(
                        sql: """
                            INSERT INTO local_identity (id, public_key, private_key_sealed, registration_id, created_at)
                            VALUES (1, ?, ?, ?, ?)
                            """,
                        arguments: [Data(identity.identityKey.serialized), sealed, Int64(registrationId), clock()])
                    return (protection, ledger)
                }
            }
            try files.restrictPermissions()
            return DeviceStore(path: path, queue: queue, protection: protection, ledger: ledger, clock: clock)
        } catch {
            try? queue.close()
            files.removeAll()
            throw error
        }
    }

    /// Opens the existing store at `path`, upgrading its schema if it is older than this client.
    /// Throws `passphraseRequired`, `notSealed` or `wrongPassphrase` when `passphrase` does not
    /// match how the store was created, `schemaTooNew` (leaving the file untouched) when a newer
    /// client wrote it, and `storeRolledBack` when its key rows were restored together with their
    /// ledger from an older copy (`resetAfterRollback(at:passphrase:)` is the way out).
    public static func open(
        at path: String, passphrase: Passphrase? = nil, clock: @escaping StoreClock = SystemStoreClock.now
    ) throws(DeviceStoreError) -> DeviceStore {
        try open(at: path, unlock: passphrase.map(StoreUnlock.passphrase), clock: clock, verifyLedger: true)
    }

    /// Opens the existing store at `path` with `unlock`: its passphrase, or a `StoreKey` from an earlier
    /// unlock (`storeKey`), which skips Argon2id. A key that does not open it: `storeKeyMismatch`; an
    /// unsealed store given either: `notSealed`. Otherwise as `open(at:passphrase:clock:)`.
    public static func open(
        at path: String, unlock: StoreUnlock?, clock: @escaping StoreClock = SystemStoreClock.now
    ) throws(DeviceStoreError) -> DeviceStore {
        try open(at: path, unlock: unlock, clock: clock, verifyLedger: true)
    }

    static func open(
        at path: String, unlock: StoreUnlock?, clock: @escaping StoreClock, verifyLedger: Bool
    ) throws(DeviceStoreError) -> DeviceStore {
        let files = StoreFiles(path: path)
        guard files.exists() else { throw .notFound(path: path) }
        try files.restrictPermissions()
        let queue: DatabaseQueue
        do {
            queue = try openQueue(files)
        } catch .database(let code, _) where code & 0xff == Self.sqliteNotADatabase {
            throw .notInitialised
        }
        do {
            let migrator = StoreSchema.migrator()
            let protection = try run {
                let applied = try queue.read { db in try migrator.appliedIdentifiers(db) }
                let unknown = applied.subtracting(migrator.migrations)
                guard unknown.isEmpty else { throw DeviceStoreError.schemaTooNew(unknownMigrations: unknown.sorted()) }
                guard !applied.isEmpty else { throw DeviceStoreError.notInitialised }
                try migrator.migrate(queue)
                return try queue.read { db in try StoreMetadata.unlock(db, unlock: unlock) }
            }
            let ledger = try RollbackLedger(protection: protection)
            try run {
                try queue.write { db in
                    // A store from before rollback detection: its rows get versions and a ledger now.
                    if try ledger.state(db) == nil { try ledger.rebuild(db) }
                }
                if verifyLedger { try queue.read { db in try ledger.verify(db) } }
            }
            try files.restrictPermissions()
            return DeviceStore(path: path, queue: queue, protection: protection, ledger: ledger, clock: clock)
        } catch .database(let code, _) where code & 0xff == Self.sqliteNotADatabase {
            try? queue.close()
            throw .notInitialised
        } catch {
            try? queue.close()
            throw error
        }
    }

    /// SQLITE_NOTADB: the file is not an SQLite database at all.
    private static let sqliteNotADatabase: Int32 = 26

    /// Closes the connection (checkpointing the WAL). Later calls fail.
    public func close() throws(DeviceStoreError) {
        try Self.run { try queue.close() }
    }

    private static func openQueue(_ files: StoreFiles) throws(DeviceStoreError) -> DatabaseQueue {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(10)
        configuration.label = "ParleyClient.DeviceStore"
        configuration.prepareDatabase { db in
            // A committed ratchet step must survive power loss: the relay deletes what we acked.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Freed pages (removed prekeys, replaced session records) are zeroed, not left behind.
            try db.execute(sql: "PRAGMA secure_delete = ON")
            // The in-memory search index of a sealed store must never reach a temp file.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        return try run { try DatabaseQueue(path: files.path, configuration: configuration) }
    }

    // MARK: transactions

    /// Runs `body` in one transaction: every store write made inside it (through this store,
    /// including the ParleyProtocol store methods that `body` calls) commits when `body` returns
    /// and is rolled back when it throws; the error is rethrown unchanged (SQLite errors become
    /// `DeviceStoreError.database`). Nested calls use savepoints.
    ///
    /// `body` runs on the store's database queue: it must not wait for another thread that uses
    /// this store.
    public func transaction<T>(_ body: (DeviceStore) throws -> T) throws -> T {
        do {
            return try queue.unsafeReentrantWrite { db in
                try Self.atomically(db) { _ in try body(self) }
            }
        } catch let error as DatabaseError {
            throw Self.storeError(error)
        }
    }

    /// Runs `body` atomically: inside the caller's transaction as a savepoint, otherwise in a
    /// transaction of its own. All errors come out as `DeviceStoreError`.
    func write<T>(_ body: (Database) throws -> T) throws(DeviceStoreError) -> T {
        try Self.run {
            try queue.unsafeReentrantWrite { db in try Self.atomically(db, body) }
        }
    }

    /// Runs `body` (reads only) on the connection, seeing the caller's transaction if any.
    func read<T>(_ body: (Database) throws -> T) throws(DeviceStoreError) -> T {
        try Self.run {
            try queue.unsafeReentrantWrite { db in try body(db) }
        }
    }

    private static func atomically<T>(_ db: Database, _ body: (Database) throws -> T) throws -> T {
        var result: T? = nil
        if db.isInsideTransaction {
            try db.inSavepoint {
                result = try body(db)
                return .commit
            }
        } else {
            try db.inTransaction(.immediate) {
                result = try body(db)
                return .commit
            }
        }
        guard let result else { throw DeviceStoreError.invalidArgument("transaction produced no result") }
        return result
    }

    /// Runs `body`, converting whatever it throws into a `DeviceStoreError`.
    static func run<T>(_ body: () throws -> T) throws(DeviceStoreError) -> T {
        do {
            return try body()
        } catch {
            throw storeError(error)
        }
    }

    static func storeError(_ error: any Error) -> DeviceStoreError {
        switch error {
        case let error as DeviceStoreError:
            return error
        case let error as DatabaseError:
            return .database(code: error.extendedResultCode.rawValue, message: error.message ?? "\(error.resultCode)")
        default:
            return .database(code: -1, message: String(describing: error))
        }
    }
}
