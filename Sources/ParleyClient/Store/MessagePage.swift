/// A position in a conversation's timeline, for paging: the `(sortAt, id)` of the last message
/// of the previous page. Pages go newest first, so the next page holds strictly older messages.
public struct MessageCursor: Sendable, Hashable {
    public let sortAt: Int64
    public let id: MessageID

    public init(sortAt: Int64, id: MessageID) {
        self.sortAt = sortAt
        self.id = id
    }
}

/// One page of a conversation, newest first.
public struct MessagePage: Sendable, Equatable {
    public let messages: [StoredMessage]
    /// The cursor for the next (older) page, or nil when this page reached the oldest message.
    public let next: MessageCursor?
}
