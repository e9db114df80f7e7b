import Foundation
import ParleyProtocol

/// The local id of a message (assigned in insertion order; stable for the life of the store).
public struct MessageID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: Int64

    public init(rawValue: Int64) { self.rawValue = rawValue }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "message \(rawValue)" }
}

/// A message as kept in the history.
public struct StoredMessage: Sendable, Equatable {
    public let id: MessageID
    public let conversation: ConversationID
    /// The relay's id of the envelope it came in (dedup key), if any.
    public let serverId: UUID?
    /// The sender-chosen message id, if any (see `NewMessage.messageUid`).
    public let messageUid: String?
    /// The sending account and device (this device's own address for outgoing messages).
    public let sender: ProtocolAddress
    public let outgoing: Bool
    /// Sender's timestamp (ms since 1970), if known.
    public let sentAt: Int64?
    /// When this device received it (ms since 1970), for incoming messages.
    public let receivedAt: Int64?
    /// The position in the conversation's timeline (ms since 1970): `receivedAt` for incoming
    /// messages, `sentAt` for outgoing ones, else the insertion time.
    public let sortAt: Int64
    /// The text, or nil when there is none (could not decrypt) or it is unreadable.
    public let body: String?
    /// The envelope arrived but did not decrypt; `body` is nil. Such a placeholder waits for
    /// its sender's resend, which takes its place (client.md §6).
    public let couldNotDecrypt: Bool
    /// A placeholder whose repair failed: the sender could not resend it, or never answered.
    public var repairUnavailable: Bool = false
    /// A group notice: `body` is its sentence ("alice removed carol"), `sender` the account that
    /// made the change.
    public var notice: Bool = false
    /// Per-recipient status of an outgoing message (empty for incoming ones).
    public let statuses: [String: DeliveryStatus]
    /// Set in listings when this row's body failed to unseal or decode (`corruptRow`); the
    /// other messages of the page are unaffected. `message(id:)` throws the error instead.
    public let unreadable: DeviceStoreError?

    /// The cursor for the page that follows this message (older messages).
    public var cursor: MessageCursor { MessageCursor(sortAt: sortAt, id: id) }
}
