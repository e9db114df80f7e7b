import Foundation
import ParleyWire

/// Account presence: online while at least one device has a WebSocket open. Subscribers get a
/// `presence` frame when an account's state changes; flapping within the coalescing window is
/// reported once (only if the state at the end of the window differs from the last one reported).
actor PresenceHub {
    private let hub: ConnectionHub
    private let store: any RelayStore
    private let coalesce: Duration
    private var connected: [String: Int] = [:]
    private var lastSeen: [String: Int64] = [:]
    private var lastReported: [String: Bool] = [:]
    private var scheduled: Set<String> = []
    private var watchers: [String: Set<DeviceAddress>] = [:]
    private var subscriptions: [DeviceAddress: Set<String>] = [:]

    init(hub: ConnectionHub, store: any RelayStore, coalesceMilliseconds: Int64) {
        self.hub = hub
        self.store = store
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
            frames.append(await state(of: account))
        }
        return frames
    }

    func unsubscribe(_ subscriber: DeviceAddress) {
        guard let accounts = subscriptions.removeValue(forKey: subscriber) else { return }
        for account in accounts {
            watchers[account]?.remove(subscriber)
            if watchers[account]?.isEmpty == true { watchers[account] = nil }
        }
    }

    func state(of account: String) async -> ServerFrame {
        let online = (connected[account] ?? 0) > 0
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
        let online = (connected[account] ?? 0) > 0
        let previous = lastReported[account] ?? false
        guard online != previous else { return }
        lastReported[account] = online
        let frame = ServerFrame(type: .presence, account: account, online: online, lastSeen: lastSeen[account])
        for watcher in watchers[account] ?? [] {
            await hub.send(.frame(frame), to: watcher)
        }
    }
}
