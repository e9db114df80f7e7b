import GRDB

/// Monotonic counters kept in the `meta` table (`counter.<name>`), e.g. the next one-time
/// prekey id: ids are never reused, so a late message naming a consumed prekey cannot meet a
/// different key under the same id.
extension DeviceStore {
    /// Returns the counter's current value (`initial` the first time) and stores `value + count`.
    public func reserveCounter(_ name: String, count: UInt32, initial: UInt32 = 1) throws(DeviceStoreError) -> UInt32 {
        try write { db in
            let key = "counter.\(name)"
            let current = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [key]) ?? Int64(initial)
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", arguments: [key, current + Int64(count)])
            guard let value = UInt32(exactly: current) else {
                throw DeviceStoreError.corruptMetadata("counter \(name) out of range: \(current)")
            }
            return value
        }
    }
}
