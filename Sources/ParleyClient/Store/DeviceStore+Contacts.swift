import GRDB

/// Contacts (`contact`) and their devices (`contact_device`).
extension DeviceStore {
    /// Stores `account` with `displayName`, or updates the display name of a known contact.
    public func saveContact(account: String, displayName: String?) throws(DeviceStoreError) {
        guard !account.isEmpty else { throw .invalidArgument("empty account name") }
        let now = clock()
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO contact (account, display_name, created_at) VALUES (?, ?, ?)
                    ON CONFLICT (account) DO UPDATE SET display_name = excluded.display_name
                    """,
                arguments: [account, displayName, now])
        }
    }

    public func contact(account: String) throws(DeviceStoreError) -> Contact? {
        try read { db throws -> Contact? in
            try Row.fetchOne(
                db, sql: "SELECT account, display_name, created_at FROM contact WHERE account = ?", arguments: [account]
            ).map { row throws -> Contact in try Self.contact(row) }
        }
    }

    /// All contacts, by account name.
    public func contacts() throws(DeviceStoreError) -> [Contact] {
        try read { db throws -> [Contact] in
            try Row.fetchAll(db, sql: "SELECT account, display_name, created_at FROM contact ORDER BY account")
                .map { row throws -> Contact in try Self.contact(row) }
        }
    }

    /// Removes a contact and its devices (not its conversations, sessions or identities).
    public func deleteContact(account: String) throws(DeviceStoreError) {
        try write { db in try db.execute(sql: "DELETE FROM contact WHERE account = ?", arguments: [account]) }
    }

    /// Records (or updates) a device of `account`, creating the contact without a display name if
    /// it is unknown.
    public func saveContactDevice(account: String, deviceId: UInt32, registrationId: UInt32) throws(DeviceStoreError) {
        guard !account.isEmpty else { throw .invalidArgument("empty account name") }
        let now = clock()
        try write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO contact (account, display_name, created_at) VALUES (?, NULL, ?)",
                arguments: [account, now])
            try db.execute(
                sql: "INSERT OR REPLACE INTO contact_device (account, device_id, registration_id) VALUES (?, ?, ?)",
                arguments: [account, Int64(deviceId), Int64(registrationId)])
        }
    }

    /// The known devices of `account`, by device id.
    public func contactDevices(account: String) throws(DeviceStoreError) -> [ContactDevice] {
        try read { db throws -> [ContactDevice] in
            try Row.fetchAll(
                db, sql: "SELECT device_id, registration_id FROM contact_device WHERE account = ? ORDER BY device_id",
                arguments: [account]
            ).map { row throws -> ContactDevice in
                let key = account
                return ContactDevice(
                    deviceId: try row.uint32("device_id", table: "contact_device", key: key),
                    registrationId: try row.uint32("registration_id", table: "contact_device", key: key))
            }
        }
    }

    public func removeContactDevice(account: String, deviceId: UInt32) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "DELETE FROM contact_device WHERE account = ? AND device_id = ?", arguments: [account, Int64(deviceId)])
        }
    }

    private static func contact(_ row: Row) throws(DeviceStoreError) -> Contact {
        let account: String = try row.value("account", table: "contact", key: "?")
        return Contact(
            account: account,
            displayName: try row.optionalValue("display_name", table: "contact", key: account),
            createdAt: try row.value("created_at", table: "contact", key: account))
    }
}
