import Foundation
import ParleyWire

/// Account presence: online while at least one device has a WebSocket open (on any node of the deployment).
/// Subscribers get a `presence` frame when an account's state changes; flapping within the coalescing window is
/// reported once (only if the state at the end of the window differs from the last one reported).
///
/// Each node counts its own connections; with several nodes, a change on another node arrives as
/// `remoteChanged` and the state is read from the cluster (connections on live nodes).
actor PresenceHub {
    private let hub: ConnectionHub
    private let store: any RelayStore
    private let cluster: any RelayCluster
    private let coalesce: Duration
    private var connected: [String: Int] = [:]
    private var lastSeen: [String: Int64] = [:]
    private var lastReported: [String: Bool] = [:]
    private var scheduled: Set<String> = []
    private var watchers: [String: Set<DeviceAddress>] = [:]
    private var subscriptions: [DeviceAddress: Set<String>] = [:]

    init(hub: ConnectionHub, store: any RelayStore, coalesceMilliseconds: Int64, cluster: any RelayCluster = SingleNode()) {
        self.hub = hub
        self.store = store
        self.cluster = cluster
        self.coalesce = .milliseconds(coalesceMilliseconds)
    }

    func deviceConnected(account: String) {
        connected[account, default: 0] += 1
        lastSeen[account] = RelayClock.nowMillis()
        schedule(account)
    }

    func deviceDisconnected(account: String) {
        let remaining = (connected[account] ?? 1) - 1
        connected[account] = remaining > 0 ? remaining : nil
        lastSeen[account] = RelayClock.nowMillis()
        schedule(account)
    }

    /// Replaces the device's subscription; returns the current state of each watched account.
    func subscribe(_ subscriber: DeviceAddress, to accounts: [String]) async -> [ServerFrame] {
        unsubscribe(subscriber)
        let unique = Set(accounts)
        subscriptions[subscriber] = unique
        for account in unique { watchers[account, default: []].insert(subscriber) }
        var frames: [ServerFrame] = []
        for account in unique.sorted() {
            let frame = await state(of: account)
            // Changes of accounts nobody here watched were not followed (other nodes): start from what was sent.
            if !cluster.isSingleNode, !scheduled.contains(account) {
                lastReported[account] = frame.online ?? false
            }
            frames.append(frame)
        }
        return frames
    }

    /// An account's connections changed on another node: its watchers here get the new state (coalesced).
    func remoteChanged(_ accounts: [String]) {
        for account in accounts where watchers[account] != nil {
            lastSeen[account] = nil  // read from the store: the other node touched it
            schedule(account)
        }
    }

    /// Re-reads every watched account (after notifications from other nodes may have been missed).
    func refreshWatched() {
        remoteChanged(Array(watchers.keys))
    }

    func unsubscribe(_ subscriber: DeviceAddress) {
        guard let accounts = subscriptions.removeValue(forKey: subscriber) else { return }
        for account in accounts {
            watchers[account]?.remove(subscriber)
            if watchers[account]?.isEmpty == true { watchers[account] = nil }
        }
    }

    func state(of account: String) async -> ServerFrame {
        var online = (connected[account] ?? 0) > 0
        if !online { online = await cluster.onlineElsewhere(account) }
        var seen = lastSeen[account]
        if seen == nil { seen = try? await store.lastSeen(account: account) }
        return ServerFrame(type: .presence, account: account, online: online, lastSeen: seen)
    }

    private func schedule(_ account: String) {
        guard !scheduled.contains(account) else { return }
        scheduled.insert(account)
        let delay = coalesce
        Task {
            try? await Task.sleep(for: delay)
            await self.report(account)
        }
    }

    private func report(_ account: String) async {
        scheduled.remove(account)
        var online = (connected[account] ?? 0) > 0
        if !online { online = await cluster.onlineElsewhere(account) }
        let previous = lastReported[account] ?? false
        guard online != previous else { return }
        lastReported[account] = online
        var seen = lastSeen[account]
        if seen == nil, !cluster.isSingleNode { seen = try? await store.lastSeen(account: account) }
        let frame = ServerFrame(type: .presence, account: account, online: online, lastSeen: seen)
        for watcher in watchers[account] ?? [] {
            await hub.send(.frame(frame), to: watcher)
        }
    }
}
