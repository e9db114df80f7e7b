import Foundation
import ParleyProtocol
import ParleyWire

/// Session set-up for fan-outs to many accounts (a sender key handed to a large group, a first message to an
/// account with many devices): the bundles of every device without a session come in as few batched requests
/// as the relay takes (`POST /v1/keys/bundles`), instead of one request (or two: its device list, then its
/// bundles) per account. Specs/client.md §"Sessions with many accounts".
extension ParleyDevice {
    /// Accounts per batched bundle request: the relay's cap (`PreKeyBundleBatchRequest`: as many accounts as a
    /// group has members, 500 by default), so that a whole group's set-up is one request.
    static let maxBundleBatchAccounts = 500

    /// Bundles fetched ahead of a fan-out, by account; `encrypt` uses them instead of fetching.
    typealias PrefetchedBundles = [String: [PreKeyBundle]]

    /// Fetches, in batches of `maxBundleBatchAccounts`, the bundles `accounts` need before a fan-out:
    /// - an account whose devices are known: the devices without a current session (none: not requested);
    /// - an account never seen (no device list, no session): all its active devices, and its device list is
    ///   recorded from the answer (one request instead of a device-list request and a bundle request).
    /// An account whose device list is unknown but that has sessions (a peer whose messages arrived before
    /// any was sent to it) is left to `devices(of:)`: fetching all its bundles would take one-time prekeys
    /// that its existing sessions do not need. This device is never requested. A bundle that does not parse
    /// is left out (`encrypt` fetches that device alone and reports the error there).
    /// A session row restored from an older copy of the store (`DeviceStoreError.rolledBack`) is discarded here as
    /// in `encrypt`: its device then counts as one without a session, and its bundle is fetched with the others.
    func prefetchBundles(for accounts: [String]) async throws -> PrefetchedBundles {
        try await recoveringFromRollback { try await prefetchBundlesOnce(for: accounts) }
    }

    private func prefetchBundlesOnce(for accounts: [String]) async throws -> PrefetchedBundles {
        var targets: [BundleRequestTarget] = []
        var listUnknown = Set<String>()
        var seen = Set<String>()
        for name in accounts where seen.insert(name).inserted {
            var known: [UInt32] = []
            if try store.contact(account: name) != nil { known = try store.contactDevices(account: name).map(\.deviceId) }
            if known.isEmpty && name == account.name {
                // Our own account is never asked for whole: the relay would hand out this device's own bundle too,
                // taking one of its one-time prekeys (EC and Kyber) for nothing. Its device list first, then only
                // the other devices without a session.
                try await refreshDevices(of: name)
                known = try store.contactDevices(account: name).map(\.deviceId)
            }
            if known.isEmpty {
                guard name != account.name, try store.sessionDeviceIds(for: name).isEmpty else { continue }
                targets.append(BundleRequestTarget(account: name))
                listUnknown.insert(name)
                continue
            }
            let missing = try known.filter { id in
                guard name != account.name || id != account.deviceId else { return false }
                return try store.loadSession(for: ProtocolAddress(name: name, deviceId: id))?.hasCurrentSession != true
            }
            if !missing.isEmpty { targets.append(BundleRequestTarget(account: name, deviceIds: missing)) }
        }
        var result: PrefetchedBundles = [:]
        var start = 0
        while start < targets.count {
            let batch = Array(targets[start..<min(start + Self.maxBundleBatchAccounts, targets.count)])
            start += batch.count
            let answer = try await relay.bundles(for: batch)
            let requested = Set(batch.map(\.account))
            try store.transaction { store in
                for entry in answer.accounts where requested.contains(entry.account) {
                    if listUnknown.contains(entry.account) && !entry.devices.isEmpty {
                        if try store.contact(account: entry.account) == nil { try store.saveContact(account: entry.account, displayName: nil) }
                        for device in entry.devices {
                            try store.saveContactDevice(account: entry.account, deviceId: device.deviceId, registrationId: device.registrationId)
                        }
                    }
                    let bundles = entry.devices.filter { entry.account != account.name || $0.deviceId != account.deviceId }
                        .compactMap { try? Self.bundle($0) }
                    if !bundles.isEmpty { result[entry.account, default: []] += bundles }
                }
            }
        }
        return result
    }
}
