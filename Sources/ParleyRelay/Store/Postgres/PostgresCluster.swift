import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ParleyWire
import PostgresNIO
import ServiceLifecycle

/// Several relay nodes on one PostgreSQL database, coordinated through that database only:
///
/// * **Node leases**: each node has a `relay_node` row whose `lease_until` it renews every
///   `PostgresStoreLimits.heartbeatMilliseconds`. A node whose lease ran out is dead for the others: its
///   connections stop counting at once, and the next live node's heartbeat deletes its rows and tells the
///   others' presence subscribers.
/// * **Where devices are**: `device_connection` holds each device's current session (node, connection id),
///   written in group-committed batches. Registering takes the device row's lock, so a send committed on any
///   node either sees the registration (and notifies this node) or committed before it (and the session's
///   first queue read finds it).
/// * **Wake-ups**: each node LISTENs on its own channel. The store notifies, inside the committing transaction,
///   the nodes holding recipients (`ClusterMessage`, ids only); a node reads those entries from the tables in
///   one query per batch of notifications and hands them to its sessions.
/// * After losing its listener connection (PostgreSQL restarting) a node answers 503 until it is back, then
///   every session re-reads its queue and every watched presence is re-read: what was notified meanwhile was
///   lost, what was committed was not.
final class PostgresCluster: RelayCluster {
    let store: PostgresRelayStore
    var isSingleNode: Bool { false }
    private var nodeId: Int64 { store.nodeId }
    private var logger: Logger { store.logger }

    /// Connects and disconnects, committed in batches (a reconnect storm costs a few transactions).
    private let registrations: GroupCommitter<ConnectionChange, Void>
    /// Typing frames for accounts connected elsewhere, looked up and sent in batches.
    private let forwards: GroupCommitter<ClusterMessage.ForwardedFrame, Void>
    private let state = NIOLockedValueBox(State())

    private struct State {
        var core: RelayCore?
        /// Entries announced by other nodes, waiting to be read.
        var announced: [(DeviceAddress, Int64)] = []
        var reading = false
        /// When the heartbeat last started succeeding without a failure since (reaping others needs a full lease
        /// of it: a node that was itself cut off must not declare the others dead).
        var healthySince: ContinuousClock.Instant?
        /// The listener's current connection (closed to make the listener start over, see `heartbeat`).
        var listener: PostgresConnection?
        /// Heartbeats failed in a row while the listener was up.
        var failedBeats = 0
    }

    enum ConnectionChange: Sendable {
        case connect(AuthenticatedDevice, UInt64)
        case disconnect(AuthenticatedDevice, UInt64)

        var device: AuthenticatedDevice {
            switch self {
            case .connect(let device, _), .disconnect(let device, _): device
            }
        }
    }

    /// SQL for the database's clock in Unix milliseconds (leases use one clock for all nodes).
    static let nowSQL = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT"

    /// The notification channel of a node (lower case: channel names are identifiers).
    static func channel(schema: String, node: Int64) -> String {
        "parley_\(schema)_\(String(UInt64(bitPattern: node), radix: 16))"
    }

    init(store: PostgresRelayStore) {
        self.store = store
        registrations = GroupCommitter { batch in
            try await Self.commitRegistrations(batch, store: store)
            return batch.map { _ in .success(()) }
        }
        forwards = GroupCommitter { batch in
            try await Self.sendForwards(batch, store: store)
            return batch.map { _ in .success(()) }
        }
    }

    /// Adds this node to the deployment (before it serves anything).
    func join(description: String) async throws {
        try await store.transaction { [self] connection in
            try await store.rows(
                connection,
                """
                INSERT INTO relay_node (id, started_at, lease_until, description)
                VALUES (\(nodeId), \(unescaped: Self.nowSQL), \(unescaped: Self.nowSQL) + \(PostgresStoreLimits.leaseMilliseconds),
                    \(description))
                """)
        }
    }

    // MARK: RelayCluster

    func deviceConnected(_ device: AuthenticatedDevice, connection: UInt64) async throws {
        try await registrations.submit(.connect(device, connection))
    }

    func deviceDisconnected(_ device: AuthenticatedDevice, connection: UInt64) async throws {
        try await registrations.submit(.disconnect(device, connection))
    }

    /// Which of the devices (`$1`, `$2`) have a session on a live node.
    enum ConnectedSQL: PreparedSQL {
        static let name = "parley_connected"
        static let sql = """
            SELECT c.account_id, c.device_id FROM device_connection c
            JOIN unnest($1::bigint[], $2::bigint[]) AS t(a, v) ON c.account_id = t.a AND c.device_id = t.v
            JOIN relay_node n ON n.id = c.node_id AND n.lease_until > \(PostgresCluster.nowSQL)
            """
    }

    func connectedNowhere(_ devices: [DeviceAddress]) async -> [DeviceAddress] {
        guard !devices.isEmpty else { return [] }
        do {
            let connected = try await store.read { [self] connection in
                try await store.rows(
                    connection, ConnectedSQL.self,
                    try PostgresRelayStore.bindings(devices.map(\.accountId), devices.map { Int64($0.deviceId) })
                ).map { row in
                    let (accountId, deviceId) = try row.decode((Int64, Int64).self)
                    return DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
                }
            }
            let set = Set(connected)
            return devices.filter { !set.contains($0) }
        } catch {
            return devices  // cannot tell: a push too many is better than none
        }
    }

    func onlineElsewhere(_ account: String) async -> Bool {
        let rows = try? await store.read { [self] connection in
            try await store.rows(
                connection,
                """
                SELECT 1 FROM device_connection c JOIN account a ON a.id = c.account_id
                JOIN relay_node n ON n.id = c.node_id AND n.lease_until > \(unescaped: Self.nowSQL)
                WHERE a.name = \(account) AND c.node_id <> \(nodeId) LIMIT 1
                """
            ).count
        }
        return (rows ?? 0) > 0
    }

    func forward(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress?) {
        forwards.submit(
            ClusterMessage.ForwardedFrame(
                account: account, exceptAccountId: except?.accountId, exceptDeviceId: except?.deviceId, frame: frame)
        ) { _ in }
    }

    func forwardClose(_ reason: CloseReason, to address: DeviceAddress) {
        let store = self.store
        Task {
            try? await store.read { connection in
                try await store.rows(
                    connection,
                    """
                    SELECT pg_notify(\(unescaped: "'parley_\(store.location.schema)_' || to_hex(c.node_id)"),
                        \("r \(address.accountId).\(address.deviceId)"))
                    FROM device_connection c
                    WHERE c.account_id = \(address.accountId) AND c.device_id = \(Int64(address.deviceId)) AND c.node_id <> \(store.nodeId)
                    """)
            }
        }
    }

    // MARK: batches

    private static func commitRegistrations(_ batch: [ConnectionChange], store: PostgresRelayStore) async throws {
        let me = store.nodeId
        try await store.transaction { [self] connection in
            let connecting = Set(batch.compactMap { change -> DeviceAddress? in
                if case .connect(let device, _) = change { return device.address }
                return nil
            })
            // Device rows first (the order every transaction uses), then the connection rows they guard.
            try await store.lockDevices(connection, connecting)
            var current: [DeviceAddress: (node: Int64, connection: UInt64)] = [:]
            if !connecting.isEmpty {
                let addresses = Array(connecting)
                for row in try await store.rows(
                    connection,
                    """
                    SELECT c.account_id, c.device_id, c.node_id, c.connection_id FROM device_connection c
                    JOIN unnest(\(addresses.map(\.accountId)), \(addresses.map { Int64($0.deviceId) })) AS t(a, v)
                        ON c.account_id = t.a AND c.device_id = t.v
                    """)
                {
                    let (accountId, deviceId, node, id) = try row.decode((Int64, Int64, Int64, Int64).self)
                    current[DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))] =
                        (node, UInt64(bitPattern: id))
                }
            }
            let stored = current
            var supersede: [Int64: [String]] = [:]
            var removeOwn: [(DeviceAddress, UInt64)] = []
            var accounts = Set<String>()
            for change in batch {
                accounts.insert(change.device.account)
                switch change {
                case .connect(let device, let id):
                    if let previous = current[device.address], previous.node != me {
                        supersede[previous.node, default: []].append(
                            "\(device.address.accountId).\(device.address.deviceId).\(previous.connection)")
                    }
                    current[device.address] = (me, id)
                case .disconnect(let device, let id):
                    if connecting.contains(device.address) {
                        if let now = current[device.address], now.node == me, now.connection == id {
                            current[device.address] = nil
                        }
                    } else {
                        removeOwn.append((device.address, id))
                    }
                }
            }
            // Devices that connected in this batch: their final row is this node's latest session, or none.
            var upsert: [(DeviceAddress, UInt64)] = []
            var delete: [(DeviceAddress, Int64, UInt64)] = []
            for address in connecting {
                if let final = current[address] {
                    if stored[address].map({ $0.node != final.node || $0.connection != final.connection }) ?? true {
                        upsert.append((address, final.connection))
                    }
                } else if let old = stored[address] {
                    delete.append((address, old.node, old.connection))
                }
            }
            if !upsert.isEmpty {
                try await store.rows(
                    connection,
                    """
                    INSERT INTO device_connection (account_id, device_id, node_id, connection_id, connected_at)
                    SELECT t.a, t.v, \(me), t.c, \(unescaped: nowSQL)
                    FROM unnest(\(upsert.map(\.0.accountId)), \(upsert.map { Int64($0.0.deviceId) }),
                        \(upsert.map { Int64(bitPattern: $0.1) })) AS t(a, v, c)
                    JOIN device d ON d.account_id = t.a AND d.device_id = t.v
                    ON CONFLICT (account_id, device_id) DO UPDATE
                        SET node_id = excluded.node_id, connection_id = excluded.connection_id, connected_at = excluded.connected_at
                    """)
            }
            let deletions = delete.map { ($0.0, $0.1, $0.2) } + removeOwn.map { ($0.0, me, $0.1) }
            if !deletions.isEmpty {
                try await store.rows(
                    connection,
                    """
                    DELETE FROM device_connection c
                    USING unnest(\(deletions.map(\.0.accountId)), \(deletions.map { Int64($0.0.deviceId) }),
                        \(deletions.map(\.1)), \(deletions.map { Int64(bitPattern: $0.2) })) AS t(a, v, n, i)
                    WHERE c.account_id = t.a AND c.device_id = t.v AND c.node_id = t.n AND c.connection_id = t.i
                    """)
            }
            var channels: [String] = []
            var payloads: [String] = []
            for (node, items) in supersede {
                for payload in ClusterMessage.pack("s", items) {
                    channels.append(channel(schema: store.location.schema, node: node))
                    payloads.append(payload)
                }
            }
            let others = try await liveNodes(connection, store: store)
            let presence = ClusterMessage.pack("p", accounts.sorted())
            for node in others {
                for payload in presence {
                    channels.append(channel(schema: store.location.schema, node: node))
                    payloads.append(payload)
                }
            }
            if !channels.isEmpty {
                try await store.rows(connection, "SELECT pg_notify(c, p) FROM unnest(\(channels), \(payloads)) AS t(c, p)")
            }
        }
    }

    /// The other nodes whose lease runs.
    private static func liveNodes(_ connection: PostgresConnection, store: PostgresRelayStore) async throws -> [Int64] {
        try await store.rows(
            connection,
            "SELECT id FROM relay_node WHERE id <> \(store.nodeId) AND lease_until > \(unescaped: nowSQL)"
        ).map { try $0.decode(Int64.self) }
    }

    private static func sendForwards(_ batch: [ClusterMessage.ForwardedFrame], store: PostgresRelayStore) async throws {
        let accounts = Array(Set(batch.map(\.account)))
        try await store.read { [self] connection in
            var nodesOf: [String: Set<Int64>] = [:]
            for row in try await store.rows(
                connection,
                """
                SELECT DISTINCT a.name, c.node_id FROM device_connection c JOIN account a ON a.id = c.account_id
                JOIN relay_node n ON n.id = c.node_id AND n.lease_until > \(unescaped: nowSQL)
                WHERE a.name = ANY(\(accounts)) AND c.node_id <> \(store.nodeId)
                """)
            {
                let (name, node) = try row.decode((String, Int64).self)
                nodesOf[name, default: []].insert(node)
            }
            var channels: [String] = []
            var payloads: [String] = []
            let encoder = WireCoding.encoder()
            for forward in batch {
                guard let nodes = nodesOf[forward.account], let json = try? encoder.encode(forward),
                    json.count < PostgresStoreLimits.maxNotifyPayloadBytes
                else { continue }
                let payload = "t " + String(decoding: json, as: UTF8.self)
                for node in nodes {
                    channels.append(channel(schema: store.location.schema, node: node))
                    payloads.append(payload)
                }
            }
            if !channels.isEmpty {
                try await store.rows(connection, "SELECT pg_notify(c, p) FROM unnest(\(channels), \(payloads)) AS t(c, p)")
            }
        }
    }

    // MARK: running

    func run(core: RelayCore) async {
        state.withLockedValue { $0.core = core }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.listen(core: core) }
                group.addTask { await self.heartbeat(core: core) }
            }
        }
        await leave()
    }

    /// Leaves the deployment: this node's connection rows and lease go, the other nodes re-read presence.
    private func leave() async {
        do {
            try await store.transaction { [self] connection in
                let names = try await store.rows(
                    connection,
                    """
                    WITH gone AS (DELETE FROM device_connection WHERE node_id = \(nodeId) RETURNING account_id)
                    SELECT DISTINCT a.name FROM gone JOIN account a ON a.id = gone.account_id
                    """
                ).map { try $0.decode(String.self) }
                try await store.rows(connection, "DELETE FROM relay_node WHERE id = \(nodeId)")
                try await Self.notifyPresence(connection, store: store, names: names)
            }
        } catch {
            logger.warning("could not leave the cluster cleanly", metadata: ["error": "\(type(of: error))"])
        }
    }

    private static func notifyPresence(_ connection: PostgresConnection, store: PostgresRelayStore, names: [String]) async throws {
        guard !names.isEmpty else { return }
        var channels: [String] = []
        var payloads: [String] = []
        for node in try await liveNodes(connection, store: store) {
            for payload in ClusterMessage.pack("p", names) {
                channels.append(channel(schema: store.location.schema, node: node))
                payloads.append(payload)
            }
        }
        if !channels.isEmpty {
            try await store.rows(connection, "SELECT pg_notify(c, p) FROM unnest(\(channels), \(payloads)) AS t(c, p)")
        }
    }

    /// Renews this node's lease; re-joins when it had run out; removes nodes whose lease ran out.
    ///
    /// It is also the node's probe of its pool: when it fails `PostgresStoreLimits.failedBeatsBeforeReconnect` times
    /// in a row while the listener still holds a connection (the database is reachable for the listener but not
    /// through the pool), the listener connection is closed, and the node goes through the whole recovery: 503
    /// meanwhile, a fresh pool, LISTEN again, every session re-reads its queue.
    private func heartbeat(core: RelayCore) async {
        while !Task.isCancelled {
            do {
                try await beat(core: core)
                state.withLockedValue { $0.failedBeats = 0 }
            } catch {
                let stale = state.withLockedValue { state -> PostgresConnection? in
                    state.healthySince = nil
                    guard let listener = state.listener else {
                        state.failedBeats = 0
                        return nil
                    }
                    state.failedBeats += 1
                    guard state.failedBeats >= PostgresStoreLimits.failedBeatsBeforeReconnect else { return nil }
                    state.failedBeats = 0
                    return listener
                }
                logger.warning("cluster heartbeat failed", metadata: ["error": "\(PostgresRelayStore.summary(error))"])
                if let stale {
                    logger.error("the database is reachable but not through the pool; reconnecting")
                    stale.close().whenComplete { _ in }
                }
            }
            try? await Task.sleep(for: .milliseconds(PostgresStoreLimits.heartbeatMilliseconds))
        }
    }

    private func beat(core: RelayCore) async throws {
        let renewed = try await store.read { [self] connection in
            try await store.rows(
                connection,
                """
                UPDATE relay_node SET lease_until = \(unescaped: Self.nowSQL) + \(PostgresStoreLimits.leaseMilliseconds)
                WHERE id = \(nodeId) RETURNING 1
                """
            ).count
        }
        if renewed == 0 {
            // Declared dead while cut off: join again and register the sessions this node still has.
            logger.warning("cluster lease was lost; rejoining")
            try await join(description: "rejoined")
            await reregister(core: core)
        }
        let now = ContinuousClock.now
        let healthySince = state.withLockedValue { state -> ContinuousClock.Instant in
            if state.healthySince == nil { state.healthySince = now }
            return state.healthySince ?? now
        }
        guard healthySince.duration(to: now) >= .milliseconds(PostgresStoreLimits.leaseMilliseconds) else { return }
        let names = try await store.transaction { [self] connection in
            let dead = try await store.rows(
                connection, "DELETE FROM relay_node WHERE lease_until < \(unescaped: Self.nowSQL) RETURNING id"
            ).map { try $0.decode(Int64.self) }
            guard !dead.isEmpty else { return [String]() }
            let names = try await store.rows(
                connection,
                """
                WITH gone AS (DELETE FROM device_connection WHERE node_id = ANY(\(dead)) RETURNING account_id)
                SELECT DISTINCT a.name FROM gone JOIN account a ON a.id = gone.account_id
                """
            ).map { try $0.decode(String.self) }
            try await Self.notifyPresence(connection, store: store, names: names)
            return names
        }
        if !names.isEmpty {
            logger.notice("removed dead relay nodes' connections", metadata: ["accounts": "\(names.count)"])
            await core.presence.remoteChanged(names)
        }
    }

    /// After this node's lease was lost, its sessions are registered again, unless the device has meanwhile
    /// connected elsewhere (then this node's session is the older one and closes).
    private func reregister(core: RelayCore) async {
        let sessions = await core.hub.registeredConnections()
        guard !sessions.isEmpty else { return }
        do {
            let taken = try await store.transaction { [self] connection in
                try await store.lockDevices(connection, sessions.map(\.device.address))
                let inserted = try await store.rows(
                    connection,
                    """
                    INSERT INTO device_connection (account_id, device_id, node_id, connection_id, connected_at)
                    SELECT t.a, t.v, \(nodeId), t.c, \(unescaped: Self.nowSQL)
                    FROM unnest(\(sessions.map(\.device.accountId)), \(sessions.map { Int64($0.device.deviceId) }),
                        \(sessions.map { Int64(bitPattern: $0.id) })) AS t(a, v, c)
                    JOIN device d ON d.account_id = t.a AND d.device_id = t.v
                    ON CONFLICT (account_id, device_id) DO NOTHING
                    RETURNING account_id, device_id
                    """
                ).map { row in
                    let (accountId, deviceId) = try row.decode((Int64, Int64).self)
                    return DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: deviceId))
                }
                let registered = Set(inserted)
                return sessions.filter { !registered.contains($0.device.address) }
            }
            for session in taken {
                if await core.hub.supersede(session.device.address, connection: session.id) {
                    await core.presence.unsubscribe(session.device.address)
                }
            }
        } catch {
            logger.warning("could not register sessions again", metadata: ["error": "\(type(of: error))"])
        }
    }

    /// Listens on this node's channel; reconnects with backoff. While the listener is down the store refuses
    /// work (503); once it is back, every session re-reads its queue and watched presence is re-read.
    private func listen(core: RelayCore) async {
        let channel = Self.channel(schema: store.location.schema, node: nodeId)
        var delay = PostgresStoreLimits.reconnectInitialMilliseconds
        var lost = false
        var connectionNumber = 0
        while !Task.isCancelled {
            connectionNumber += 1
            if let connection = try? await PostgresConnection.connect(
                configuration: try store.location.connectionConfiguration(), id: connectionNumber, logger: logger)
            {
                state.withLockedValue { $0.listener = connection }
                do {
                    try await withTaskCancellationHandler {
                        try await connection.listen(on: channel) { notifications in
                            delay = PostgresStoreLimits.reconnectInitialMilliseconds
                            let recovered = lost
                            if recovered {
                                // A fresh pool first, then calls may use it.
                                lost = false
                                store.renewPool()
                                logger.notice("database reachable again")
                            }
                            store.health.set(true)
                            if recovered {
                                await core.hub.wakeAll()
                                await core.presence.refreshWatched()
                            }
                            for try await notification in notifications {
                                await handle(notification.payload, core: core)
                            }
                        }
                    } onCancel: {
                        connection.close().whenComplete { _ in }
                    }
                } catch {
                    // The connection broke (or this node is stopping): closed below, then reconnected.
                }
                state.withLockedValue { $0.listener = nil }
                // Always closed before it is released, however the listening ended (postgres-nio requires it).
                try? await connection.close()
            }
            if Task.isCancelled { break }
            if !lost {
                logger.error("lost the database listener connection; answering 503 until it is back")
            }
            lost = true
            store.health.set(false)
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, PostgresStoreLimits.reconnectMaximumMilliseconds)
        }
    }

    private func handle(_ payload: String, core: RelayCore) async {
        switch ClusterMessage.parse(payload) {
        case .entries(let entries):
            if DeliveryTrace.isEnabled {
                let now = DeliveryTrace.clock()
                for (address, seq) in entries { DeliveryTrace.line("N \(DeliveryTrace.id(address, seq)) \(now)") }
            }
            announce(entries, core: core)
        case .supersede(let items):
            for (address, id) in items {
                // A session closed this way is no longer the device's current one: it will not unsubscribe itself.
                if await core.hub.supersede(address, connection: id) { await core.presence.unsubscribe(address) }
            }
        case .removed(let addresses):
            for address in addresses { await core.hub.closeLocally(address, .deviceRemoved) }
        case .presence(let names):
            await core.presence.remoteChanged(names)
        case .frame(let forwarded):
            await core.hub.sendLocally(forwarded.frame, toAccount: forwarded.account, except: forwarded.except)
        case nil:
            logger.warning("ignored a malformed cluster notification")
        }
    }

    /// Entries other nodes committed for sessions here: read in batches by one task, handed to the sessions in
    /// queue order. If the read fails, the sessions re-read their queues themselves.
    private func announce(_ entries: [(DeviceAddress, Int64)], core: RelayCore) {
        let start = state.withLockedValue { state -> Bool in
            state.announced.append(contentsOf: entries)
            guard !state.reading else { return false }
            state.reading = true
            return true
        }
        guard start else { return }
        let store = self.store
        let state = self.state
        Task {
            while true {
                let batch = state.withLockedValue { state -> [(DeviceAddress, Int64)] in
                    let count = min(state.announced.count, PostgresStoreLimits.remoteReadBatch)
                    if count == 0 {
                        state.reading = false
                        return []
                    }
                    defer { state.announced.removeFirst(count) }
                    return Array(state.announced.prefix(count))
                }
                if batch.isEmpty { return }
                do {
                    let readStarted = DeliveryTrace.now()
                    let deliveries = try await store.entries(batch)
                    if DeliveryTrace.isEnabled {
                        let now = DeliveryTrace.clock()
                        for delivery in deliveries {
                            DeliveryTrace.line("R \(DeliveryTrace.id(delivery.address, delivery.queued.seq)) \(readStarted) \(now)")
                        }
                    }
                    _ = await core.hub.deliverRemote(deliveries)
                } catch {
                    await core.hub.wake(Array(Set(batch.map(\.0))))
                }
            }
        }
    }
}
