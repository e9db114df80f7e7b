/// The local id of a conversation (stable for the life of the store).
public struct ConversationID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int64

    public init(rawValue: Int64) { self.rawValue = rawValue }

    public var description: String { "conversation \(rawValue)" }
}

/// Whom a conversation is with: one peer account (all its devices), or a group.
public enum ConversationKind: Hashable, Sendable {
    case direct(peer: String)
    /// `groupId` is the id used in `SenderKeyName.groupId` and by the relay.
    case group(groupId: String)
}

/// A conversation: 1:1 with a peer account, or a group.
public struct Conversation: Sendable, Equatable {
    public let id: ConversationID
    public let kind: ConversationKind
    public let title: String?
    /// ms since 1970.
    public let createdAt: Int64

    public init(id: ConversationID, kind: ConversationKind, title: String?, createdAt: Int64) {
        self.id = id
        self.kind = kind
        self.title = title
        self.createdAt = createdAt
    }
}
