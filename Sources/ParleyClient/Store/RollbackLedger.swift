import Foundation
import GRDB
import ParleyCrypto

/// Rollback detection for the sealed key rows: sessions, sender keys, one-time, signed and Kyber prekeys.
///
/// * Every write of such a row takes the next value of a store-wide generation counter as the
///   row's version. The version is stored beside the row (`seal_version`) and bound into its seal
///   (the AEAD's associated data, `SealContext`): editing it makes the value fail to open.
/// * The version each row must have is kept outside the rows, in `seal_ledger`. A row whose
///   version is not the ledger's (an older copy put back), or that has no ledger entry (a deleted
///   one-time prekey that came back), is refused with `rolledBack` and left as it is.
/// * The ledger is covered by a keyed digest, the XOR of HMAC-SHA256(ledger key, entry) over its
///   entries, kept with the generation in `meta.ledger`, sealed under the store key: O(1) to update
///   per write, verified when the store opens. Restoring rows *and* their ledger entries from an
///   older copy is then caught (`storeRolledBack`).
/// * All of it is written in the same SQLite transaction as the row itself, so a crash can never
///   leave a false alarm behind (which a counter in a separate file, not updated atomically with
///   the database, could).
///
/// Not detectable locally: a whole store restored from a backup (every file at once: rows, ledger
/// and metadata consistent). That is accepted, not refused (a phone restored from a backup must
/// keep working); its rewound sessions are repaired by the peers' decryption-error reports. In a
/// clear store (no passphrase) the ledger key is a public constant: the check then catches
/// accidental partial restores, not someone editing the file, who can rewrite anything in a clear
/// store anyway.
struct RollbackLedger: Sendable {
    /// A table whose rows are versioned: its key columns (in `SealContext` order) and sealed column.
    struct ProtectedTable: Sendable {
        let name: String
        let keyColumns: [String]
        let sealedColumn: String
    }

    static let protectedTables = [
        ProtectedTable(name: "session", keyColumns: ["name", "device_id"], sealedColumn: "record_sealed"),
        ProtectedTable(name: "sender_key", keyColumns: ["group_id", "sender_name", "sender_device_id"], sealedColumn: "record_sealed"),
        ProtectedTable(name: "prekey", keyColumns: ["id"], sealedColumn: "private_key_sealed"),
        ProtectedTable(name: "signed_prekey", keyColumns: ["id"], sealedColumn: "private_key_sealed"),
        ProtectedTable(name: "kyber_prekey", keyColumns: ["id"], sealedColumn: "secret_key_sealed"),
    ]

    static let metaName = "ledger"
    static let metaContext = SealContext(table: "meta", key: ["ledger"])
    static let digestSize = HMACSHA256.outputSize
    /// What the ledger key is derived from in a clear store (no secret exists there).
    static let clearStoreKeyMaterial = Array("parley-client-store clear ledger".utf8)
    static let keyInfo = Array("parley-client-store/v2 ledger".utf8)

    /// The generation (the last version handed out) and the digest of the ledger.
    struct State: Equatable {
        var generation: UInt64
        var digest: [UInt8]

        static let empty = State(generation: 0, digest: [UInt8](repeating: 0, count: RollbackLedger.digestSize))

        var encoded: [UInt8] { withUnsafeBytes(of: generation.bigEndian) { Array($0) } + digest }

        init(generation: UInt64, digest: [UInt8]) {
            self.generation = generation
            self.digest = digest
        }

        init?(encoded bytes: [UInt8]) {
            guard bytes.count == 8 + RollbackLedger.digestSize else { return nil }
            generation = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            digest = Array(bytes.suffix(RollbackLedger.digestSize))
        }

        mutating func toggle(_ entry: [UInt8]) {
            for i in digest.indices { digest[i] ^= entry[i] }
        }
    }

    let key: SecretBytes
    let protection: ValueProtection

    init(protection: ValueProtection) throws(DeviceStoreError) {
        self.protection = protection
        do {
            switch protection {
            case .clear:
                key = try HKDF.deriveSecret(ikm: Self.clearStoreKeyMaterial, salt: [UInt8](), info: Self.keyInfo, length: 32)
            case .sealed(let storeKey):
                key = try HKDF.deriveSecret(ikm: storeKey, salt: [UInt8](), info: Self.keyInfo, length: 32)
            }
        } catch {
            throw .cryptoUnavailable
        }
    }

    // MARK: state

    func state(_ db: Database) throws -> State? {
        guard let stored = try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [Self.metaName]) else {
            return nil
        }
        let bytes: [UInt8]
        switch protection {
        case .clear:
            bytes = Array(stored)
        case .sealed(let key):
            guard let opened = ValueProtection.open(stored, key: key, context: Self.metaContext) else {
                throw DeviceStoreError.corruptMetadata("the ledger digest does not open")
            }
            bytes = opened.copyBytes()
        }
        guard let state = State(encoded: bytes) else { throw DeviceStoreError.corruptMetadata("malformed ledger digest") }
        return state
    }

    func save(_ db: Database, _ state: State) throws {
        let value = try protection.protect(state.encoded, context: Self.metaContext)
        try db.execute(sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", arguments: [Self.metaName, value])
    }

    private func requireState(_ db: Database) throws -> State {
        guard let state = try state(db) else { throw DeviceStoreError.corruptMetadata("the ledger digest is missing") }
        return state
    }

    /// The MAC of one ledger entry: table, key parts and version, each unambiguously framed.
    func entry(_ context: SealContext, version: UInt64) -> [UInt8] {
        var data = SealContext.frame(context.table)
        data += context.keyEncoding
        data += withUnsafeBytes(of: version.bigEndian) { Array($0) }
        return HMACSHA256.mac(key: key, data: data)
    }

    // MARK: rows

    /// The version the ledger expects for the row `context`, or nil when it knows no such row.
    func expectedVersion(_ db: Database, _ context: SealContext) throws -> UInt64? {
        guard let version = try Int64.fetchOne(
            db, sql: "SELECT version FROM seal_ledger WHERE tbl = ? AND row_key = ?",
            arguments: [context.table, Data(context.keyEncoding)])
        else { return nil }
        return UInt64(exactly: version)
    }

    /// Records a (re)write of the row `context` and returns the version to seal it with. Must run in
    /// the transaction that writes the row.
    func record(_ db: Database, _ context: SealContext) throws -> UInt64 {
        var state = try requireState(db)
        if let old = try expectedVersion(db, context) { state.toggle(entry(context, version: old)) }
        state.generation += 1
        state.toggle(entry(context, version: state.generation))
        try db.execute(
            sql: "INSERT OR REPLACE INTO seal_ledger (tbl, row_key, version) VALUES (?, ?, ?)",
            arguments: [context.table, Data(context.keyEncoding), Int64(bitPattern: state.generation)])
        try save(db, state)
        return state.generation
    }

    /// Forgets the row `context` (deleted): a copy of it that comes back has no entry and is refused.
    func remove(_ db: Database, _ context: SealContext) throws {
        guard let old = try expectedVersion(db, context) else { return }
        var state = try requireState(db)
        state.toggle(entry(context, version: old))
        state.generation += 1
        try db.execute(
            sql: "DELETE FROM seal_ledger WHERE tbl = ? AND row_key = ?", arguments: [context.table, Data(context.keyEncoding)])
        try save(db, state)
    }

    /// Refuses a row whose version is not the one the ledger holds for it.
    func check(_ db: Database, _ context: SealContext, rowVersion: Int64) throws {
        guard let expected = try expectedVersion(db, context), UInt64(exactly: rowVersion) == expected else {
            throw DeviceStoreError.rolledBack(table: context.table, key: context.keyDescription)
        }
    }

    // MARK: the whole ledger

    /// Recomputes the digest over every ledger entry and compares it with the stored one.
    func verify(_ db: Database) throws {
        let stored = try requireState(db)
        var computed = State.empty
        let rows = try Row.fetchCursor(db, sql: "SELECT tbl, row_key, version FROM seal_ledger")
        while let row = try rows.next() {
            guard let table = String.fromDatabaseValue(row["tbl"]), let key = Data.fromDatabaseValue(row["row_key"]),
                let version = Int64.fromDatabaseValue(row["version"])
            else { throw DeviceStoreError.storeRolledBack }
            var data = SealContext.frame(table)
            data += Array(key)
            data += withUnsafeBytes(of: UInt64(bitPattern: version).bigEndian) { Array($0) }
            computed.toggle(HMACSHA256.mac(key: self.key, data: data))
        }
        guard ConstantTime.equals(computed.digest, stored.digest) else { throw DeviceStoreError.storeRolledBack }
    }

    /// Starts the ledger afresh from the rows present: each row that opens is sealed again under a
    /// new version. For a store made before rollback detection existed (its rows carry no version)
    /// and after `resetAfterRollback`. A row that does not open keeps its value and version (it is
    /// then reported as `corruptRow`, as before).
    func rebuild(_ db: Database) throws {
        try db.execute(sql: "DELETE FROM seal_ledger")
        var state = try self.state(db) ?? .empty
        state.digest = State.empty.digest
        for table in Self.protectedTables {
            let keyList = table.keyColumns.joined(separator: ", ")
            let rows = try Row.fetchAll(db, sql: "SELECT \(keyList), \(table.sealedColumn), seal_version FROM \(table.name)")
            for row in rows {
                let parts = table.keyColumns.map { column -> String in
                    let value: DatabaseValue = row[column]
                    if let text = String.fromDatabaseValue(value) { return text }
                    return Int64.fromDatabaseValue(value).map { String($0) } ?? ""
                }
                let context = SealContext(table: table.name, key: parts)
                let oldVersion = Int64.fromDatabaseValue(row["seal_version"]).flatMap { UInt64(exactly: $0) } ?? 0
                let sealed = Data.fromDatabaseValue(row[table.sealedColumn]) ?? Data()
                var version = oldVersion
                if let plaintext = try? protection.reveal(sealed, context: context.versioned(oldVersion)) {
                    state.generation += 1
                    version = state.generation
                    let resealed = try protection.protect(plaintext, context: context.versioned(version))
                    let condition = table.keyColumns.map { "\($0) = ?" }.joined(separator: " AND ")
                    var values: [DatabaseValue] = [resealed.databaseValue, Int64(bitPattern: version).databaseValue]
                    values += table.keyColumns.map { row[$0] as DatabaseValue }
                    try db.execute(
                        sql: "UPDATE \(table.name) SET \(table.sealedColumn) = ?, seal_version = ? WHERE \(condition)",
                        arguments: StatementArguments(values))
                }
                state.toggle(entry(context, version: version))
                try db.execute(
                    sql: "INSERT OR REPLACE INTO seal_ledger (tbl, row_key, version) VALUES (?, ?, ?)",
                    arguments: [context.table, Data(context.keyEncoding), Int64(bitPattern: version)])
            }
        }
        try save(db, state)
    }
}
