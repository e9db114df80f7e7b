import Foundation

/// Type tag of a WebSocket frame. Every frame is one JSON text message with a `type` field.
public enum FrameType: String, Codable, Sendable {
    // relay -> device
    case message
    case queueEmpty
    case presence
    case typing
    case error
    case pong
    // device -> relay
    case ack
    case subscribePresence
    case ping
    // `typing` is used in both directions.
}

/// A frame sent by a device to the relay.
public struct ClientFrame: Codable, Sendable, Equatable {
    public var type: FrameType
    /// `ack`: server ids to remove from this device's queue.
    public var ids: [UUID]?
    /// `subscribePresence`: accounts to watch (replaces the previous subscription).
    public var accounts: [String]?
    /// `typing`: recipient account (1:1) ...
    public var to: String?
    /// ... or group.
    public var groupId: UUID?
    /// `typing`: true = started, false = stopped.
    public var started: Bool?

    public init(
        type: FrameType, ids: [UUID]? = nil, accounts: [String]? = nil, to: String? = nil, groupId: UUID? = nil,
        started: Bool? = nil
    ) {
        self.type = type
        self.ids = ids
        self.accounts = accounts
        self.to = to
        self.groupId = groupId
        self.started = started
    }

    public static func ack(_ ids: [UUID]) -> ClientFrame { ClientFrame(type: .ack, ids: ids) }
}

/// A frame sent by the relay to a device.
public struct ServerFrame: Codable, Sendable, Equatable {
    public var type: FrameType
    /// `message`
    public var envelope: Envelope?
    /// `presence`, `typing`: the account concerned.
    public var account: String?
    /// `typing`: sending device.
    public var deviceId: UInt32?
    /// `typing`: group, if group typing.
    public var groupId: UUID?
    /// `presence`
    public var online: Bool?
    /// `presence`: ms since 1970 of last activity (nil if never seen).
    public var lastSeen: Int64?
    /// `typing`
    public var started: Bool?
    /// `error`
    public var error: ErrorResponse?

    public init(
        type: FrameType, envelope: Envelope? = nil, account: String? = nil, deviceId: UInt32? = nil,
        groupId: UUID? = nil, online: Bool? = nil, lastSeen: Int64? = nil, started: Bool? = nil,
        error: ErrorResponse? = nil
    ) {
        self.type = type
        self.envelope = envelope
        self.account = account
        self.deviceId = deviceId
        self.groupId = groupId
        self.online = online
        self.lastSeen = lastSeen
        self.started = started
        self.error = error
    }
}
