import NIOCore
import ParleyWire

/// What the relay pushes into a device's WebSocket session.
enum SessionEvent: Sendable {
    /// New envelopes were committed to the device's queue: read them from the store.
    case wake
    /// One envelope just committed to the device's queue (delivered without reading the store).
    case envelope(QueuedEnvelope)
    /// An ephemeral frame (presence, typing, error, pong).
    case frame(ServerFrame)
    /// An already encoded JSON text frame (e.g. `sendResult`).
    case encoded(ByteBuffer)
    /// Close the connection.
    case close(CloseReason)
}

/// Why the relay closes a WebSocket; each maps to a WebSocket close code (see Specs/relay-protocol.md).
enum CloseReason: Sendable {
    /// A newer connection of the same device replaced this one (1008).
    case superseded
    /// The device was removed (1008).
    case deviceRemoved
    /// Too many bad frames (1008).
    case abuse
    /// Relay shutting down (1001).
    case shutdown

    var text: String {
        switch self {
        case .superseded: "superseded by a newer connection"
        case .deviceRemoved: "device removed"
        case .abuse: "too many bad frames"
        case .shutdown: "relay shutting down"
        }
    }
}
