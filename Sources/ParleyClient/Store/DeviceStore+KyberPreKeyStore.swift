import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Kyber prekeys (`kyber_prekey`): the public key and signature in the clear, the secret key
/// sealed and versioned (`RollbackLedger`: a used one-time Kyber prekey copied back into the file
/// is refused); and the uses of last-resort keys (`kyber_prekey_use`), removed with their key.
extension DeviceStore: KyberPreKeyStore {
    public func loadKyberPreKey(id: UInt32) throws(DeviceStoreError) -> KyberPreKeyRecord? {
        try read { db throws -> KyberPreKeyRecord? in
            guard let row = try Row.fetchOne(
                db,
                sql: "SELECT id, public_key, secret_key_sealed, signature, timestamp, last_resort, seal_version FROM kyber_prekey WHERE id = ?",
                arguments: [Int64(id)])
            else { return nil }
            return try kyberPreKey(db, row, id: id)
        }
    }

    public func storeKyberPreKey(_ record: KyberPreKeyRecord) throws(DeviceStoreError) {
        let context = SealContext.kyberPreKey(record.id)
        guard let timestamp = Int64(exactly: record.timestamp) else {
            throw .invalidArgument("Kyber prekey timestamp \(record.timestamp) is out of range")
        }
        let secret = record.keyPair.secretKey.serialize()
        try write { db in
            let version = try ledger.record(db, context)
            let sealed = try protection.protect(secret, context: context.versioned(version))
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO kyber_prekey (id, public_key, secret_key_sealed, signature, timestamp, last_resort, seal_version)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    Int64(record.id), Data(record.keyPair.publicKey.serialized), sealed, Data(record.signature), timestamp,
                    record.isLastResort, Int64(bitPattern: version),
                ])
        }
    }

    public func removeKyberPreKey(id: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM kyber_prekey WHERE id = ?", arguments: [Int64(id)])
            try keyRowDeleted(db, .kyberPreKey(id))
        }
    }

    public func isKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws(DeviceStoreError) -> Bool {
        try read { db in
            try Bool.fetchOne(
                db,
                sql: "SELECT 1 FROM kyber_prekey_use WHERE kyber_prekey_id = ? AND signed_prekey_id = ? AND base_key = ?",
                arguments: [Int64(id), Int64(signedPreKeyId), Data(baseKey.serialized)]) ?? false
        }
    }

    public func markKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO kyber_prekey_use (kyber_prekey_id, signed_prekey_id, base_key) VALUES (?, ?, ?)",
                arguments: [Int64(id), Int64(signedPreKeyId), Data(baseKey.serialized)])
        }
    }

    // MARK: beyond the protocol

    /// Every Kyber prekey held, oldest first (for rotation and refills).
    public func kyberPreKeys() throws(DeviceStoreError) -> [KyberPreKeyRecord] {
        try read { db throws -> [KyberPreKeyRecord] in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT id, public_key, secret_key_sealed, signature, timestamp, last_resort, seal_version FROM kyber_prekey ORDER BY timestamp, id")
            return try rows.map { row throws -> KyberPreKeyRecord in
                try kyberPreKey(db, row, id: try row.uint32("id", table: "kyber_prekey", key: "?"))
            }
        }
    }

    /// How many last-resort uses are remembered for Kyber prekey `id` (diagnostics and tests).
    public func kyberPreKeyUseCount(id: UInt32) throws(DeviceStoreError) -> Int {
        try read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM kyber_prekey_use WHERE kyber_prekey_id = ?", arguments: [Int64(id)]) ?? 0
        }
    }

    /// The session policy (`meta.session_policy`): which new sessions this device agrees to.
    public func sessionPolicy() throws(DeviceStoreError) -> SessionPolicy {
        try read { db in try StoreMetadata.sessionPolicy(db) }
    }

    public func setSessionPolicy(_ policy: SessionPolicy) throws(DeviceStoreError) {
        try write { db in try StoreMetadata.putSessionPolicy(db, policy) }
    }

    /// The record of a `kyber_prekey` row; the secret key must embed the public key stored beside it,
    /// and the row's version must be the one the ledger holds (else `rolledBack`).
    private func kyberPreKey(_ db: Database, _ row: Row, id: UInt32) throws -> KyberPreKeyRecord {
        let context = SealContext.kyberPreKey(id)
        let version: Int64 = try row.value("seal_version", table: context.table, key: context.keyDescription)
        let sealed: Data = try row.value("secret_key_sealed", table: context.table, key: context.keyDescription)
        let publicBytes: Data = try row.value("public_key", table: context.table, key: context.keyDescription)
        let signature: Data = try row.value("signature", table: context.table, key: context.keyDescription)
        let timestamp: Int64 = try row.value("timestamp", table: context.table, key: context.keyDescription)
        let lastResort: Bool = try row.value("last_resort", table: context.table, key: context.keyDescription)
        let secret = try protection.reveal(sealed, context: context.versioned(UInt64(bitPattern: version)))
        guard let publicKey = try? KEMPublicKey(serialized: publicBytes), let secretKey = try? KEMSecretKey(serialized: secret) else {
            throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "Kyber key does not decode")
        }
        guard secretKey.embeds(publicKey) else {
            throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "secret key does not match its public key")
        }
        guard let stamp = UInt64(exactly: timestamp) else {
            throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "negative timestamp")
        }
        try ledger.check(db, context, rowVersion: version)
        return KyberPreKeyRecord(
            id: id, keyPair: KEMKeyPair(publicKey: publicKey, secretKey: secretKey), signature: Array(signature), timestamp: stamp,
            isLastResort: lastResort)
    }
}
