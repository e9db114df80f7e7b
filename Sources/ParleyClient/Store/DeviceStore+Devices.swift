import Foundation
import GRDB
import ParleyProtocol

/// The account's devices as this store knows them: what is forgotten about a device that left an
/// account, and the mark of a store whose own device was removed (Specs/client.md §1.1). No schema
/// change: the mark is a row of the `meta` table.
extension DeviceStore {
    /// `meta` row: milliseconds since 1970 at which this device removed itself from its account.
    static let removedFromAccountName = "device_removed_at"

    /// Forgets a device of `account` that is no longer part of it (removed, or a link never
    /// finished): its entry in the device list, its session, and every record that it holds one of
    /// this device's sender keys (so a later hand-out does not count it, nor wait for it). One
    /// transaction.
    public func forgetDevice(account: String, deviceId: UInt32) throws {
        try transaction { store in
            try store.removeContactDevice(account: account, deviceId: deviceId)
            try store.deleteSession(for: ProtocolAddress(name: account, deviceId: deviceId))
            try store.forgetSenderKeyHolder(account: account, deviceId: deviceId)
        }
    }

    /// Drops the records that `account`'s device `deviceId` holds this device's sender keys, in every group
    /// (it was removed, or reinstalled: it has none of them now).
    public func forgetSenderKeyHolder(account: String, deviceId: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "DELETE FROM sender_key_shared WHERE account = ? AND device_id = ?", arguments: [account, Int64(deviceId)])
        }
    }

    /// Records that this device removed itself from its account (`at`: milliseconds since 1970). From then on
    /// the engine sends nothing from this store and does not connect (`ParleyDevice.removedFromAccount`); its
    /// history stays readable.
    public func markRemovedFromAccount(at: Int64) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", arguments: [Self.removedFromAccountName, at])
        }
    }

    /// When this device removed itself from its account, or nil.
    public func removedFromAccountAt() throws(DeviceStoreError) -> Int64? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [Self.removedFromAccountName])
        }
    }
}
