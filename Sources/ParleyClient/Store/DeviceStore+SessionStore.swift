import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Session records per address (`session`), serialized by ParleyProtocol
/// (`SessionRecord.serialized()`, `Proto/LocalStorage.proto`), sealed and versioned
/// (`RollbackLedger`).
extension DeviceStore: SessionStore {
    public func loadSession(for address: ProtocolAddress) throws(DeviceStoreError) -> SessionRecord? {
        let context = SealContext.session(address.name, address.deviceId)
        return try read { db throws -> SessionRecord? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT record_sealed, seal_version FROM session WHERE name = ? AND device_id = ?",
                arguments: [address.name, Int64(address.deviceId)])
            else { return nil }
            let bytes = try revealRecord(db, row, context: context)
            do {
                // The protocol layer parses an array: wipe that copy once parsed.
                var copy = bytes.copyBytes()
                defer { for i in copy.indices { copy[i] = 0 } }
                return try SessionRecord(serialized: copy)
            } catch {
                throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "\(error)")
            }
        }
    }

    public func storeSession(_ record: SessionRecord, for address: ProtocolAddress) throws(DeviceStoreError) {
        let context = SealContext.session(address.name, address.deviceId)
        let now = clock()
        try writeRecord(context: context, serialize: { try record.serialized() }) { db, sealed, version in
            try db.execute(
                sql: "INSERT OR REPLACE INTO session (name, device_id, record_sealed, updated_at, seal_version) VALUES (?, ?, ?, ?, ?)",
                arguments: [address.name, Int64(address.deviceId), sealed, now, Int64(bitPattern: version)])
        }
    }

    // MARK: beyond the protocol

    /// Device ids of `name` with which a session record is stored (for fan-out to all devices).
    public func sessionDeviceIds(for name: String) throws(DeviceStoreError) -> [UInt32] {
        try read { db in
            try Int64.fetchAll(db, sql: "SELECT device_id FROM session WHERE name = ? ORDER BY device_id", arguments: [name])
                .compactMap { UInt32(exactly: $0) }
        }
    }

    /// Removes the session with `address` (for example after the relay reports the device gone).
    public func deleteSession(for address: ProtocolAddress) throws(DeviceStoreError) {
        let context = SealContext.session(address.name, address.deviceId)
        try write { db in
            try db.execute(
                sql: "DELETE FROM session WHERE name = ? AND device_id = ?", arguments: [address.name, Int64(address.deviceId)])
            try keyRowDeleted(db, context)
        }
    }

    // MARK: shared with sender keys

    /// Serializes a record and writes it sealed under the row's next version (one atomic write:
    /// the row, its ledger entry and the ledger digest). The plaintext serialization (which holds
    /// chain keys) is wiped as soon as it has been sealed.
    func writeRecord(
        context: SealContext, serialize: () throws -> [UInt8], _ insert: (Database, Data, UInt64) throws -> Void
    ) throws(DeviceStoreError) {
        var bytes: [UInt8]
        do { bytes = try serialize() } catch { throw .invalidArgument("record does not serialize: \(error)") }
        defer { for i in bytes.indices { bytes[i] = 0 } }
        try write { db in
            let version = try ledger.record(db, context)
            let sealed = try protection.protect(bytes, context: context.versioned(version))
            try insert(db, sealed, version)
            try keyRowReplaced(db)
        }
    }

    /// Opens a record row (`record_sealed`, `seal_version`) and checks it against the ledger.
    func revealRecord(_ db: Database, _ row: Row, context: SealContext) throws -> SecretBytes {
        let sealed: Data = try row.value("record_sealed", table: context.table, key: context.keyDescription)
        let version: Int64 = try row.value("seal_version", table: context.table, key: context.keyDescription)
        let plaintext = try protection.reveal(sealed, context: context.versioned(UInt64(bitPattern: version)))
        try ledger.check(db, context, rowVersion: version)
        return plaintext
    }
}
