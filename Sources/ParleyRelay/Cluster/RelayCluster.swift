import ParleyWire
import ServiceLifecycle

/// What one relay node shares with the other nodes of its deployment: where devices are connected, wake-ups for
/// envelopes committed on one node for a device connected to another, supersede and device-removed closes,
/// presence changes and typing indicators.
///
/// A relay on SQLite is the whole deployment (`SingleNode`: nothing to share). Relays on one PostgreSQL database
/// share it through that database (`PostgresCluster`: a connection table, node leases, LISTEN/NOTIFY). The
/// routes and sessions do not call this directly: `ConnectionHub`, `PresenceHub` and `RelayCore` do.
protocol RelayCluster: Sendable {
    /// True when this node is the whole deployment (nothing is forwarded).
    var isSingleNode: Bool { get }

    /// Runs the node's background work (listening for other nodes, lease heartbeats) until graceful shutdown.
    func run(core: RelayCore) async

    /// A device session became this device's current session on this node. Returns once that is recorded
    /// deployment-wide: an envelope committed afterwards on any node wakes this session, and an older session
    /// of the device on another node is closed (superseded).
    func deviceConnected(_ device: AuthenticatedDevice, connection: UInt64) async throws

    /// The session `connection` of the device ended (no-op if a newer one replaced it).
    func deviceDisconnected(_ device: AuthenticatedDevice, connection: UInt64) async throws

    /// Of these devices (none has a session on this node), those that have no session on any live node.
    func connectedNowhere(_ devices: [DeviceAddress]) async -> [DeviceAddress]

    /// Whether a device of the account has a session on another live node.
    func onlineElsewhere(_ account: String) async -> Bool

    /// Forwards an ephemeral frame (typing) to the account's devices connected to other nodes.
    func forward(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress?)

    /// Closes the device's session if it is on another node (the device was removed).
    func forwardClose(_ reason: CloseReason, to address: DeviceAddress)
}

/// The deployment is this one node.
struct SingleNode: RelayCluster {
    var isSingleNode: Bool { true }
    /// Nothing to run: waits for graceful shutdown (a service that returns early would stop the relay).
    func run(core: RelayCore) async {
        try? await gracefulShutdown()
    }
    func deviceConnected(_ device: AuthenticatedDevice, connection: UInt64) async throws {}
    func deviceDisconnected(_ device: AuthenticatedDevice, connection: UInt64) async throws {}
    func connectedNowhere(_ devices: [DeviceAddress]) async -> [DeviceAddress] { devices }
    func onlineElsewhere(_ account: String) async -> Bool { false }
    func forward(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress?) {}
    func forwardClose(_ reason: CloseReason, to address: DeviceAddress) {}
}
