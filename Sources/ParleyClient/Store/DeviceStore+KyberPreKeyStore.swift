import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Kyber prekeys (`kyber_prekey`): the public key and signature in the clear, the secret key
/// sealed; and the uses of last-resort keys (`kyber_prekey_use`), removed with their key.
extension DeviceStore: KyberPreKeyStore {
    public func loadKyberPreKey(id: UInt32) throws(DeviceStoreError) -> KyberPreKeyRecord? {
        try read { db throws -> KyberPreKeyRecord? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT id, public_key, secret_key_sealed, signature, timestamp, last_resort FROM kyber_prekey WHERE id = ?",
                arguments: [Int64(id)])
            else { return nil }
            return try kyberPreKey(row, id: id)
        }
    }

    public func storeKyberPreKey(_ record: KyberPreKeyRecord) throws(DeviceStoreError) {
        let context = SealContext.kyberPreKey(record.id)
        let sealed = try protection.protect(record.keyPair.secretKey.serialize(), context: context)
        guard let timestamp = Int64(exactly: record.timestamp) else {
            throw .invalidArgument("Kyber prekey timestamp \(record.timestamp) is out of range")
        }
        try write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO kyber_prekey (id, public_key, secret_key_sealed, signature, timestamp, last_resort)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    Int64(record.id), Data(record.keyPair.publicKey.serialized), sealed, Data(record.signature), timestamp,
                    record.isLastResort,
                ])
        }
    }

    public func removeKyberPreKey(id: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM kyber_prekey WHERE id = ?", arguments: [Int64(id)])
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
                db, sql: "SELECT id, public_key, secret_key_sealed, signature, timestamp, last_resort FROM kyber_prekey ORDER BY timestamp, id")
            return try rows.map { row throws -> KyberPreKeyRecord in
                try kyberPreKey(row, id: try row.uint32("id", table: "kyber_prekey", key: "?"))
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

    /// The record of a `kyber_prekey` row; the secret key must embed the public key stored beside it.
    private func kyberPreKey(_ row: Row, id: UInt32) throws(DeviceStoreError) -> KyberPreKeyRecord {
        let context = SealContext.kyberPreKey(id)
        let sealed: Data = try row.value("secret_key_sealed", table: context.table, key: context.keyDescription)
        let publicBytes: Data = try row.value("public_key", table: context.table, key: context.keyDescription)
        let signature: Data = try row.value("signature", table: context.table, key: context.keyDescription)
        let timestamp: Int64 = try row.value("timestamp", table: context.table, key: context.keyDescription)
        let lastResort: Bool = try row.value("last_resort", table: context.table, key: context.keyDescription)
        let secret = try protection.reveal(sealed, context: context)
        guard let publicKey = try? KEMPublicKey(serialized: publicBytes), let secretKey = try? KEMSecretKey(serialized: secret) else {
            throw .corruptRow(table: context.table, key: context.keyDescription, reason: "Kyber key does not decode")
        }
        guard secretKey.embeds(publicKey) else {
            throw .corruptRow(table: context.table, key: context.keyDescription, reason: "secret key does not match its public key")
        }
        guard let stamp = UInt64(exactly: timestamp) else {
            throw .corruptRow(table: context.table, key: context.keyDescription, reason: "negative timestamp")
        }
        return KyberPreKeyRecord(
            id: id, keyPair: KEMKeyPair(publicKey: publicKey, secretKey: secretKey), signature: Array(signature), timestamp: stamp,
            isLastResort: lastResort)
    }
}
