import ParleyProtocol

/// A key row the store refuses as rolled back (restored from an older copy of the store file:
/// `DeviceStoreError.rolledBack`) is discarded and the operation runs again: a session then starts
/// anew from the peer's bundle (so no message key is used twice), a used one-time prekey stays
/// gone, this device's own sender key is replaced and distributed again. The peer's side of a
/// discarded session is repaired by the usual decryption-error report (Specs/client.md §6).
extension ParleyDevice {
    /// Discarded rows per operation at most (each operation touches a handful of key rows).
    static let maxRollbackDiscards = 8

    func recoveringFromRollback<T>(_ body: () async throws -> T) async throws -> T {
        var discarded = 0
        while true {
            do {
                return try await body()
            } catch DeviceStoreError.rolledBack(let table, let key) where discarded < Self.maxRollbackDiscards {
                discarded += 1
                try discardRolledBack(table: table, key: key)
            }
        }
    }

    func discardRolledBack(table: String, key: String) throws {
        logger.warning("\(table)[\(key)] was restored from an older copy of the store: discarded")
        try store.discardRolledBackRow(table: table, key: key)
    }
}
