import NIOConcurrencyHelpers

/// What every send looks up, kept across write transactions: account ids by name and the active devices of
/// accounts (device id → registration id). Filled only inside the send batches' write transactions; every
/// other write transaction (`SQLiteRelayStore.writeChangingLookups`: registration, linking, prekey and
/// identity uploads, device removal, expiry of stale links, groups, push) clears it first. Write transactions
/// are serialized, so an entry always matches the committed state the next send batch starts from. Queue
/// counters are not cached here: they change with every send and ack.
final class SQLiteLookupCache: Sendable {
    private struct State {
        var accountIds: [String: Int64] = [:]
        var devices: [Int64: [UInt32: UInt32]] = [:]
    }

    /// Entries kept before the cache starts over (bounds its memory on a relay with many accounts).
    static let maxEntries = 100_000

    private let state = NIOLockedValueBox(State())

    func accountId(_ name: String) -> Int64? {
        state.withLockedValue { $0.accountIds[name] }
    }

    func remember(accountId: Int64, name: String) {
        state.withLockedValue { state in
            if state.accountIds.count >= Self.maxEntries { state.accountIds.removeAll() }
            state.accountIds[name] = accountId
        }
    }

    func devices(_ accountId: Int64) -> [UInt32: UInt32]? {
        state.withLockedValue { $0.devices[accountId] }
    }

    func remember(devices: [UInt32: UInt32], accountId: Int64) {
        state.withLockedValue { state in
            if state.devices.count >= Self.maxEntries { state.devices.removeAll() }
            state.devices[accountId] = devices
        }
    }

    func clear() {
        state.withLockedValue { $0 = State() }
    }
}
