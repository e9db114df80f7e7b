import NIOCore
import NIOWebSocket
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

extension SessionEvent {
    /// Bytes the event takes once encoded as a frame (envelopes: base64 content plus the envelope's fields), as
    /// counted against `RelayLimits.maxOutboxBytesPerConnection`.
    var estimatedBytes: Int {
        switch self {
        case .wake, .close: 0
        case .envelope(let queued): (queued.envelope.content.count + 2) / 3 * 4 + 384
        case .frame: 256
        case .encoded(let buffer): buffer.readableBytes
        }
    }

    /// A frame whose loss costs the device nothing lasting (a later one supersedes it, or it only mattered at
    /// once): presence, typing, pong. Dropped rather than held for a device that does not read.
    var isEphemeral: Bool {
        guard case .frame(let frame) = self else { return false }
        switch frame.type {
        case .presence, .typing, .pong: return true
        default: return false
        }
    }
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
    /// The database cannot be reached, so this node cannot tell the others where the device is (1011).
    case unavailable

    /// The WebSocket close code.
    var code: WebSocketErrorCode {
        switch self {
        case .shutdown: .goingAway
        case .unavailable: .unexpectedServerError
        case .superseded, .deviceRemoved, .abuse: .policyViolation
        }
    }

    var text: String {
        switch self {
        case .superseded: "superseded by a newer connection"
        case .deviceRemoved: "device removed"
        case .abuse: "too many bad frames"
        case .shutdown: "relay shutting down"
        case .unavailable: "database unavailable"
        }
    }
}
