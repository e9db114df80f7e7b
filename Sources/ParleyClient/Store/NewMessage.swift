import Foundation
import ParleyProtocol

/// A message to add to the history.
public struct NewMessage: Sendable {
    public var conversation: ConversationID
    /// The relay's envelope id for incoming messages: a second message with the same id is not
    /// stored again (see `MessageInsertResult.duplicate`).
    public var serverId: UUID?
    /// The sender-chosen message id (`DataMessage.message_id`): a second message from the same
    /// sender account with the same id (a resend after a crash, or a redelivered sync copy) is
    /// not stored again. Receipts name messages by it.
    public var messageUid: String?
    public var sender: ProtocolAddress
    public var outgoing: Bool
    public var sentAt: Int64?
    public var receivedAt: Int64?
    public var body: String?
    public var couldNotDecrypt: Bool
    /// Initial per-recipient statuses (outgoing messages).
    public var statuses: [String: DeliveryStatus]
    /// A group notice ("alice added dave"): `body` is its sentence, `sender` the account that
    /// made the change.
    public var notice: Bool

    public init(
        conversation: ConversationID, serverId: UUID? = nil, sender: ProtocolAddress, outgoing: Bool,
        sentAt: Int64? = nil, receivedAt: Int64? = nil, body: String?, couldNotDecrypt: Bool = false,
        statuses: [String: DeliveryStatus] = [:], messageUid: String? = nil, notice: Bool = false
    ) {
        self.notice = notice
        self.messageUid = messageUid
        self.conversation = conversation
        self.serverId = serverId
        self.sender = sender
        self.outgoing = outgoing
        self.sentAt = sentAt
        self.receivedAt = receivedAt
        self.body = body
        self.couldNotDecrypt = couldNotDecrypt
        self.statuses = statuses
    }
}

/// What `insertMessage` did.
public enum MessageInsertResult: Sendable, Equatable {
    case inserted(MessageID)
    /// A message with the same server id is already stored (a redelivered envelope); nothing
    /// was changed. Carries the stored message's id.
    case duplicate(MessageID)

    public var id: MessageID {
        switch self {
        case .inserted(let id), .duplicate(let id): return id
        }
    }
}
