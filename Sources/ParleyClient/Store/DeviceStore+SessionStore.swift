import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Session records per address (`session`), serialized by ParleyProtocol
/// (`SessionRecord.serialized()`, `Proto/LocalStorage.proto`) and sealed.
extension DeviceStore: SessionStore {
    public func loadSession(for address: ProtocolAddress) throws(DeviceStoreError) -> SessionRecord? {
        let context = SealContext.session(address.name, address.deviceId)
        return try read { db throws -> SessionRecord? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT record_sealed FROM session WHERE name = ? AND device_id = ?",
                arguments: [address.name, Int64(address.deviceId)])
            else { return nil }
            let bytes = try revealRecord(row, context: context)
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
        let sealed = try protectRecord(context: context) { try record.serialized() }
        let now = clock()
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO session (name, device_id, record_sealed, updated_at) VALUES (?, ?, ?, ?)",
                arguments: [address.name, Int64(address.deviceId), sealed, now])
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
        try write { db in
            try db.execute(
                sql: "DELETE FROM session WHERE name = ? AND device_id = ?", arguments: [address.name, Int64(address.deviceId)])
        }
    }

    // MARK: shared with sender keys

    /// Serializes a record and protects it for the row `context`; the plaintext serialization
    /// (which holds chain keys) is wiped as soon as it has been protected.
    func protectRecord(context: SealContext, _ serialize: () throws -> [UInt8]) throws(DeviceStoreError) -> Data {
        var bytes: [UInt8]
        do { bytes = try serialize() } catch { throw .invalidArgument("record does not serialize: \(error)") }
        defer { for i in bytes.indices { bytes[i] = 0 } }
        return try protection.protect(bytes, context: context)
    }

    func revealRecord(_ row: Row, context: SealContext) throws(DeviceStoreError) -> SecretBytes {
        let sealed: Data = try row.value("record_sealed", table: context.table, key: context.keyDescription)
        return try protection.reveal(sealed, context: context)
    }
}
