import Foundation
import ParleyProtocol

/// The history the existing device hands to a new one: every conversation (1:1 and groups) and
/// the newest messages, as many as fit in the provisioning blob.
public struct HistoryArchive: Sendable, Equatable {
    public var conversations: [ArchivedConversation]
    /// Newest first.
    public var messages: [ArchivedMessage]

    public init(conversations: [ArchivedConversation] = [], messages: [ArchivedMessage] = []) {
        self.conversations = conversations
        self.messages = messages
    }
}

/// A conversation of the archive. Messages refer to it by its index in `conversations`.
public struct ArchivedConversation: Sendable, Equatable {
    public var kind: ConversationKind
    public var title: String?
    public var createdAt: Int64

    public init(kind: ConversationKind, title: String?, createdAt: Int64) {
        self.kind = kind
        self.title = title
        self.createdAt = createdAt
    }
}

/// A message of the archive, with everything the history keeps about it except the local id.
public struct ArchivedMessage: Sendable, Equatable {
    /// Index into `HistoryArchive.conversations`.
    public var conversation: UInt32
    public var serverId: UUID?
    public var sender: ProtocolAddress
    public var outgoing: Bool
    public var sentAt: Int64?
    public var receivedAt: Int64?
    public var sortAt: Int64
    public var body: String?
    public var couldNotDecrypt: Bool
    public var statuses: [String: DeliveryStatus]
    /// The sender-chosen message id (receipts and deduplication refer to it), if any.
    public var messageUid: String?

    public init(
        conversation: UInt32, serverId: UUID?, sender: ProtocolAddress, outgoing: Bool, sentAt: Int64?,
        receivedAt: Int64?, sortAt: Int64, body: String?, couldNotDecrypt: Bool, statuses: [String: DeliveryStatus],
        messageUid: String? = nil
    ) {
        self.messageUid = messageUid
        self.conversation = conversation
        self.serverId = serverId
        self.sender = sender
        self.outgoing = outgoing
        self.sentAt = sentAt
        self.receivedAt = receivedAt
        self.sortAt = sortAt
        self.body = body
        self.couldNotDecrypt = couldNotDecrypt
        self.statuses = statuses
    }
}

/// A contact of the archive.
public struct ArchivedContact: Sendable, Equatable {
    public var account: String
    public var displayName: String?
    public var createdAt: Int64

    public init(account: String, displayName: String?, createdAt: Int64) {
        self.account = account
        self.displayName = displayName
        self.createdAt = createdAt
    }
}

/// A recorded identity key of another device, with its trust (verified) state.
public struct ArchivedIdentity: Sendable, Equatable {
    public var address: ProtocolAddress
    public var identityKey: IdentityKey
    public var verified: Bool
    public var firstSeen: Int64

    public init(address: ProtocolAddress, identityKey: IdentityKey, verified: Bool, firstSeen: Int64) {
        self.address = address
        self.identityKey = identityKey
        self.verified = verified
        self.firstSeen = firstSeen
    }
}
