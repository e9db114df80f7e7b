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
    /// Answer to a device's `send` frame (same outcome as `PUT /v1/messages/{account}`).
    case sendResult
    // device -> relay
    case ack
    case subscribePresence
    case ping
    /// A 1:1 message sent over the WebSocket instead of `PUT /v1/messages/{account}`.
    case send
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
    /// `send`: chosen by the device, echoed in the `sendResult` (or `error`) frame that answers it.
    public var requestId: Int64?
    /// `send`: as in `SendMessageRequest` (the recipient account is `to`).
    public var messages: [OutgoingDeviceMessage]?
    public var ownDeviceMessages: [OutgoingDeviceMessage]?
    public var clientTimestamp: Int64?

    public init(
        type: FrameType, ids: [UUID]? = nil, accounts: [String]? = nil, to: String? = nil, groupId: UUID? = nil,
        started: Bool? = nil, requestId: Int64? = nil, messages: [OutgoingDeviceMessage]? = nil,
        ownDeviceMessages: [OutgoingDeviceMessage]? = nil, clientTimestamp: Int64? = nil
    ) {
        self.type = type
        self.ids = ids
        self.accounts = accounts
        self.to = to
        self.groupId = groupId
        self.started = started
        self.requestId = requestId
        self.messages = messages
        self.ownDeviceMessages = ownDeviceMessages
        self.clientTimestamp = clientTimestamp
    }

    public static func ack(_ ids: [UUID]) -> ClientFrame { ClientFrame(type: .ack, ids: ids) }

    /// A `send` frame: the WebSocket form of `PUT /v1/messages/{account}`.
    public static func send(requestId: Int64, to account: String, _ request: SendMessageRequest) -> ClientFrame {
        ClientFrame(
            type: .send, to: account, requestId: requestId, messages: request.messages,
            ownDeviceMessages: request.ownDeviceMessages, clientTimestamp: request.clientTimestamp)
    }
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
    /// `sendResult`, and `error` when it answers a `send` frame: the device's request id.
    public var requestId: Int64?
    /// `sendResult`: the committed message (as the body of a `200` to `PUT /v1/messages/{account}`).
    public var result: SendMessageResponse?

    public init(
        type: FrameType, envelope: Envelope? = nil, account: String? = nil, deviceId: UInt32? = nil,
        groupId: UUID? = nil, online: Bool? = nil, lastSeen: Int64? = nil, started: Bool? = nil,
        error: ErrorResponse? = nil, requestId: Int64? = nil, result: SendMessageResponse? = nil
    ) {
        self.requestId = requestId
        self.result = result
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
