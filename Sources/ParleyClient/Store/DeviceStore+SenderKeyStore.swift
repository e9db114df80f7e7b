import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// Sender-key records per (group id, sender address) (`sender_key`), serialized by
/// ParleyProtocol (`SenderKeyRecord.serialized()`), sealed and versioned (`RollbackLedger`).
extension DeviceStore: SenderKeyStore {
    public func loadSenderKey(for name: SenderKeyName) throws(DeviceStoreError) -> SenderKeyRecord? {
        let context = SealContext.senderKey(name.groupId, name.sender.name, name.sender.deviceId)
        return try read { db throws -> SenderKeyRecord? in
            guard let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT record_sealed, seal_version FROM sender_key WHERE group_id = ? AND sender_name = ? AND sender_device_id = ?
                    """,
                arguments: [name.groupId, name.sender.name, Int64(name.sender.deviceId)])
            else { return nil }
            let bytes = try revealRecord(db, row, context: context)
            do {
                // The protocol layer parses an array: wipe that copy once parsed.
                var copy = bytes.copyBytes()
                defer { for i in copy.indices { copy[i] = 0 } }
                return try SenderKeyRecord(serialized: copy)
            } catch {
                throw DeviceStoreError.corruptRow(table: context.table, key: context.keyDescription, reason: "\(error)")
            }
        }
    }

    public func storeSenderKey(_ record: SenderKeyRecord, for name: SenderKeyName) throws(DeviceStoreError) {
        let context = SealContext.senderKey(name.groupId, name.sender.name, name.sender.deviceId)
        let now = clock()
        try writeRecord(context: context, serialize: { try record.serialized() }) { db, sealed, version in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO sender_key (group_id, sender_name, sender_device_id, record_sealed, updated_at, seal_version)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [name.groupId, name.sender.name, Int64(name.sender.deviceId), sealed, now, Int64(bitPattern: version)])
        }
    }

    // MARK: beyond the protocol

    /// Removes every sender key of `groupId` (after leaving the group, or to force a new
    /// distribution after a member left).
    public func deleteSenderKeys(groupId: String) throws(DeviceStoreError) {
        try write { db in
            let senders = try Row.fetchAll(
                db, sql: "SELECT sender_name, sender_device_id FROM sender_key WHERE group_id = ?", arguments: [groupId])
            try db.execute(sql: "DELETE FROM sender_key WHERE group_id = ?", arguments: [groupId])
            for sender in senders {
                let name: String = try sender.value("sender_name", table: "sender_key", key: groupId)
                let deviceId = try sender.uint32("sender_device_id", table: "sender_key", key: groupId)
                try keyRowDeleted(db, .senderKey(groupId, name, deviceId))
            }
        }
    }
}
