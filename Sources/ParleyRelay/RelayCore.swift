import Logging

/// The relay's shared components, created once per running relay and used by routes and sessions.
final class RelayCore: Sendable {
    let limits: RelayLimits
    let store: any RelayStore
    let hub: ConnectionHub
    let presence: PresenceHub
    let batcher: MessageWriteBatcher
    let acks: AckBatcher
    let touches: TouchBatcher
    let metrics: RelayMetrics
    let bundleLimiter: RateLimiter
    /// One-time prekeys handed out per target device (`PreKeyRoutes`).
    let oneTimePreKeyLimiter: RateLimiter
    let vapid: VAPIDSigner
    let tickets = WebSocketTicketMap()
    /// The tasks serving connections (`ConnectionTasks`).
    let connectionTasks = ConnectionTasks()
    let connections: ConnectionGovernor
    let push: PushNotifier
    /// Which push endpoints are accepted and where pushes may connect (`PushEndpointPolicy`).
    let pushPolicy: PushEndpointPolicy
    /// The other nodes of the deployment (`SingleNode` on SQLite).
    let cluster: any RelayCluster
    let logger: Logger

    init(
        store: any RelayStore, limits: RelayLimits, vapid: VAPIDSigner, logger: Logger,
        pushResolver: any PushAddressResolver = SystemPushAddressResolver.shared,
        cluster: any RelayCluster = SingleNode()
    ) {
        self.limits = limits
        self.store = store
        self.logger = logger
        self.cluster = cluster
        let hub = ConnectionHub(cluster: cluster)
        self.hub = hub
        self.presence = PresenceHub(
            hub: hub, store: store, coalesceMilliseconds: limits.presenceCoalesceMilliseconds, cluster: cluster)
        let metrics = RelayMetrics()
        self.metrics = metrics
        self.vapid = vapid
        let pushPolicy = PushEndpointPolicy(allowInsecure: limits.allowInsecurePushEndpoints, resolver: pushResolver)
        self.pushPolicy = pushPolicy
        let push = PushNotifier(
            store: store, signer: vapid, limits: limits, metrics: metrics, logger: logger, policy: pushPolicy)
        self.push = push
        self.batcher = MessageWriteBatcher(store: store, limits: limits) { deliveries in
            metrics.messagesIn.increment(by: Int64(deliveries.count))
            let offline = await hub.deliver(deliveries)
            if !offline.isEmpty { await Self.pushOffline(offline, cluster: cluster, push: push) }
        }
        self.acks = AckBatcher(store: store)
        self.touches = TouchBatcher(store: store)
        self.bundleLimiter = RateLimiter(capacity: limits.bundleFetchBurst, ratePerSecond: limits.bundleFetchPerSecond)
        self.connections = ConnectionGovernor(
            capacity: ConnectionGovernor.capacity(configured: limits.maxConnections),
            maxPerAddress: limits.maxConnectionsPerAddress, registry: metrics.registry)
        self.oneTimePreKeyLimiter = RateLimiter(
            capacity: limits.oneTimePreKeyHandoutBurst, ratePerSecond: limits.oneTimePreKeyHandoutsPerHour / 3600)
    }

    /// `account`'s device was removed (its store transaction committed): its tickets are dropped and its
    /// session ends at once, whatever its outbox holds, with its presence subscription. Sends it makes meanwhile
    /// are refused by the store.
    func deviceRemoved(_ address: DeviceAddress, of account: String) async {
        tickets.revoke(address)
        await hub.end(address, of: account, reason: .deviceRemoved)
        await presence.unsubscribe(address)
    }

    /// New envelopes were committed outside the batcher (group events): wake or push the devices.
    func announce(_ addresses: [DeviceAddress]) async {
        let offline = await hub.wake(addresses)
        if !offline.isEmpty { await Self.pushOffline(offline, cluster: cluster, push: push) }
    }

    /// Pushes to devices without a session on this node that have none on another node either. With several
    /// nodes that takes a database look-up, done off the delivery path (the store already woke the other nodes).
    static func pushOffline(_ offline: [DeviceAddress], cluster: any RelayCluster, push: PushNotifier) async {
        if cluster.isSingleNode {
            await push.notify(offline)
            return
        }
        Task {
            let nowhere = await cluster.connectedNowhere(offline)
            if !nowhere.isEmpty { await push.notify(nowhere) }
        }
    }

    /// Retention time added to a server timestamp to get an expiry time.
    func expiry(from now: Int64) -> Int64 {
        now + limits.retentionSeconds * 1000
    }
}
