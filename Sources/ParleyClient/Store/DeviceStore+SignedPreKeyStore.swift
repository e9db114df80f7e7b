import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Signed prekeys (`signed_prekey`) with their signature and generation time; the private key
/// is sealed and versioned (`RollbackLedger`).
extension DeviceStore: SignedPreKeyStore {
    public func loadSignedPreKey(id: UInt32) throws(DeviceStoreError) -> SignedPreKeyRecord? {
        try read { db throws -> SignedPreKeyRecord? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT public_key, private_key_sealed, signature, timestamp, seal_version FROM signed_prekey WHERE id = ?",
                arguments: [Int64(id)])
            else { return nil }
            return try signedPreKey(db, row, id: id)
        }
    }

    public func storeSignedPreKey(_ record: SignedPreKeyRecord) throws(DeviceStoreError) {
        let context = SealContext.signedPreKey(record.id)
        guard let timestamp = Int64(exactly: record.timestamp) else {
            throw .invalidArgument("signed prekey timestamp \(record.timestamp) is out of range")
        }
        try write { db in
            let version = try ledger.record(db, context)
            let sealed = try sealPrivateKey(record.keyPair, context: context.versioned(version))
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO signed_prekey (id, public_key, private_key_sealed, signature, timestamp, seal_version)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    Int64(record.id), Data(record.keyPair.publicKey.serialized), sealed, Data(record.signature), timestamp,
                    Int64(bitPattern: version),
                ])
        }
    }

    // MARK: beyond the protocol

    /// All signed prekeys held, oldest first (for rotation: keep recent ones, remove old ones).
    public func signedPreKeys() throws(DeviceStoreError) -> [SignedPreKeyRecord] {
        try read { db throws -> [SignedPreKeyRecord] in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT id, public_key, private_key_sealed, signature, timestamp, seal_version FROM signed_prekey ORDER BY timestamp, id")
            return try rows.map { row throws -> SignedPreKeyRecord in
                try signedPreKey(db, row, id: try row.uint32("id", table: "signed_prekey", key: "?"))
            }
        }
    }

    /// Removes a signed prekey that is old enough that no PreKeySignalMessage should still use it.
    public func removeSignedPreKey(id: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM signed_prekey WHERE id = ?", arguments: [Int64(id)])
            try keyRowDeleted(db, .signedPreKey(id))
        }
    }

    private func signedPreKey(_ db: Database, _ row: Row, id: UInt32) throws -> SignedPreKeyRecord {
        let context = SealContext.signedPreKey(id)
        let keyPair = try revealVersionedKeyPair(db, row, context: context)
        let signature: Data = try row.value("signature", table: context.table, key: context.keyDescription)
        let timestamp: Int64 = try row.value("timestamp", table: context.table, key: context.keyDescription)
        guard let stamp = UInt64(exactly: timestamp) else {
            throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "negative timestamp")
        }
        return SignedPreKeyRecord(id: id, keyPair: keyPair, signature: Array(signature), timestamp: stamp)
    }
}
