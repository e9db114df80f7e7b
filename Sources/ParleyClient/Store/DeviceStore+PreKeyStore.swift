import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// One-time prekeys (`prekey`): the public key in the clear, the private key sealed and versioned
/// (`RollbackLedger`: a used prekey copied back into the file is refused).
extension DeviceStore: PreKeyStore {
    public func loadPreKey(id: UInt32) throws(DeviceStoreError) -> PreKeyRecord? {
        try read { db throws -> PreKeyRecord? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT public_key, private_key_sealed, seal_version FROM prekey WHERE id = ?", arguments: [Int64(id)])
            else { return nil }
            return PreKeyRecord(id: id, keyPair: try revealVersionedKeyPair(db, row, context: .preKey(id)))
        }
    }

    public func storePreKey(_ record: PreKeyRecord) throws(DeviceStoreError) {
        let context = SealContext.preKey(record.id)
        try write { db in
            let version = try ledger.record(db, context)
            let sealed = try sealPrivateKey(record.keyPair, context: context.versioned(version))
            try db.execute(
                sql: "INSERT OR REPLACE INTO prekey (id, public_key, private_key_sealed, seal_version) VALUES (?, ?, ?, ?)",
                arguments: [Int64(record.id), Data(record.keyPair.publicKey.serialized), sealed, Int64(bitPattern: version)])
        }
    }

    public func removePreKey(id: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM prekey WHERE id = ?", arguments: [Int64(id)])
            try keyRowDeleted(db, .preKey(id))
        }
    }

    /// Ids of the one-time prekeys still held, ascending (to know how many to publish).
    public func preKeyIds() throws(DeviceStoreError) -> [UInt32] {
        try read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM prekey ORDER BY id").compactMap { UInt32(exactly: $0) }
        }
    }

    // MARK: shared with signed prekeys and the local identity

    func sealPrivateKey(_ key: PrivateKey, context: SealContext) throws(DeviceStoreError) -> Data {
        try protection.protect(key.rawBytes(), context: context)
    }

    /// The key pair of a row with `public_key` and `private_key_sealed` columns; the private key
    /// must match the public key stored beside it.
    func revealKeyPair(_ row: Row, context: SealContext) throws(DeviceStoreError) -> PrivateKey {
        let sealed: Data = try row.value("private_key_sealed", table: context.table, key: context.keyDescription)
        let publicKey: Data = try row.value("public_key", table: context.table, key: context.keyDescription)
        let secret = try protection.reveal(sealed, context: context)
        guard let privateKey = try? PrivateKey(bytes: secret) else {
            throw .corruptRow(table: context.table, key: context.keyDescription, reason: "private key does not decode")
        }
        guard privateKey.publicKey.serialized == Array(publicKey) else {
            throw .corruptRow(table: context.table, key: context.keyDescription, reason: "private key does not match its public key")
        }
        return privateKey
    }

    /// The key pair of a versioned row (`seal_version`), which must be the version the ledger holds.
    func revealVersionedKeyPair(_ db: Database, _ row: Row, context: SealContext) throws -> PrivateKey {
        let version: Int64 = try row.value("seal_version", table: context.table, key: context.keyDescription)
        let key = try revealKeyPair(row, context: context.versioned(UInt64(bitPattern: version)))
        try ledger.check(db, context, rowVersion: version)
        return key
    }
}
