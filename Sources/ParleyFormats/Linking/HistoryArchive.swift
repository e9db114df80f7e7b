import Foundation
import ParleyCrypto
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

// MARK: encoding (the last section of the provisioning payload, Specs/client-content.md §7)

extension HistoryArchive {
    /// Message flag bits; any other bit set is refused.
    enum Flag {
        static let outgoing: UInt8 = 0x01
        static let couldNotDecrypt: UInt8 = 0x02
        static let serverId: UInt8 = 0x04
        static let sentAt: UInt8 = 0x08
        static let receivedAt: UInt8 = 0x10
        static let body: UInt8 = 0x20
        static let messageUid: UInt8 = 0x40
        static let all: UInt8 = 0x7F
    }

    /// Status codes on the wire are indexes into this list.
    static let statusOrder: [DeliveryStatus] = [.pending, .sent, .delivered, .read, .failed]

    static func statusCode(_ status: DeliveryStatus) -> UInt8 {
        UInt8(statusOrder.firstIndex(of: status) ?? 0)
    }

    /// The archive on its own (what `encode(into:limit:)` appends to a provisioning payload), in
    /// wiped memory; every message is included.
    public func encoded() throws(LinkError) -> SecretBytes {
        var writer = PayloadWriter()
        defer { writer.wipe() }
        _ = try encode(into: &writer, limit: Int.max)
        return writer.secret()
    }

    /// Parses an archive on its own (the bytes `encoded()` produces); trailing bytes are refused.
    public static func decode(_ bytes: [UInt8]) throws(LinkError) -> HistoryArchive {
        try bytes.withBytes { (raw) throws(LinkError) -> HistoryArchive in
            var reader = PayloadReader(raw)
            let archive = try decode(from: &reader)
            guard reader.isAtEnd else { throw .payloadMalformed("trailing bytes") }
            return archive
        }
    }

    /// Parses an archive on its own from wiped memory (the plaintext of a history upload).
    public static func decode(_ bytes: SecretBytes) throws(LinkError) -> HistoryArchive {
        try bytes.withBytes { (raw) throws(LinkError) -> HistoryArchive in
            var reader = PayloadReader(raw)
            let archive = try decode(from: &reader)
            guard reader.isAtEnd else { throw .payloadMalformed("trailing bytes") }
            return archive
        }
    }

    /// Appends the conversations and then, newest first, the messages that keep the writer within
    /// `limit` bytes; returns how many messages were included. Throws `payloadTooLarge` when even
    /// the part without messages exceeds `limit`.
    func encode(into writer: inout PayloadWriter, limit: Int) throws(LinkError) -> Int {
        writer.u32(UInt32(conversations.count))
        for conversation in conversations {
            switch conversation.kind {
            case .direct(let peer):
                writer.u8(1)
                try writer.string(peer, max: ProvisioningPayload.maxAccountBytes)
            case .group(let groupId):
                writer.u8(2)
                try writer.string(groupId, max: ProvisioningPayload.maxAccountBytes)
            }
            try writer.optionalString(conversation.title, max: ProvisioningPayload.maxNameBytes)
            writer.i64(conversation.createdAt)
        }
        // The message count goes before the messages; patched once we know how many fit.
        let countOffset = writer.count
        writer.u32(0)
        guard writer.count <= limit else { throw .payloadTooLarge(writer.count) }
        var included = 0
        for message in messages {
            var one = PayloadWriter()
            defer { one.wipe() }
            try Self.encode(message, conversations: conversations.count, into: &one)
            if writer.count + one.count > limit { break }
            writer.append(one)
            included += 1
        }
        writer.patchU32(UInt32(included), at: countOffset)
        return included
    }

    private static func encode(_ message: ArchivedMessage, conversations: Int, into writer: inout PayloadWriter) throws(LinkError) {
        guard Int(message.conversation) < conversations else { throw .payloadMalformed("message of an unknown conversation") }
        var flags: UInt8 = 0
        if message.outgoing { flags |= Flag.outgoing }
        if message.couldNotDecrypt { flags |= Flag.couldNotDecrypt }
        if message.serverId != nil { flags |= Flag.serverId }
        if message.sentAt != nil { flags |= Flag.sentAt }
        if message.receivedAt != nil { flags |= Flag.receivedAt }
        if message.body != nil { flags |= Flag.body }
        if message.messageUid != nil { flags |= Flag.messageUid }
        writer.u32(message.conversation)
        writer.u8(flags)
        if let serverId = message.serverId {
            writer.bytes(withUnsafeBytes(of: serverId.uuid) { Array($0) })
        }
        try writer.string(message.sender.name, max: ProvisioningPayload.maxAccountBytes)
        writer.u32(message.sender.deviceId)
        if let sentAt = message.sentAt { writer.i64(sentAt) }
        if let receivedAt = message.receivedAt { writer.i64(receivedAt) }
        writer.i64(message.sortAt)
        if let body = message.body { try writer.string(body, max: ProvisioningPayload.maxBodyBytes) }
        if let uid = message.messageUid { try writer.string(uid, max: ProvisioningPayload.maxMessageUidBytes) }
        guard message.statuses.count <= Int(UInt16.max) else { throw .payloadMalformed("too many statuses") }
        writer.u16(UInt16(message.statuses.count))
        for (recipient, status) in message.statuses.sorted(by: { $0.key < $1.key }) {
            try writer.string(recipient, max: ProvisioningPayload.maxAccountBytes)
            writer.u8(Self.statusCode(status))
        }
    }

    // MARK: decoding

    /// Reads the conversations and messages of an archive from `reader`.
    static func decode(from reader: inout PayloadReader) throws(LinkError) -> HistoryArchive {
        let maxAccountBytes = ProvisioningPayload.maxAccountBytes
        let maxNameBytes = ProvisioningPayload.maxNameBytes
        let maxBodyBytes = ProvisioningPayload.maxBodyBytes
        let maxMessageUidBytes = ProvisioningPayload.maxMessageUidBytes
        var conversations: [ArchivedConversation] = []
        var seenConversations = Set<ConversationKind>()
        for _ in 0..<(try reader.count(minimumElementSize: 14)) {
            let kindCode = try reader.u8()
            let key = try reader.string(max: maxAccountBytes)
            guard !key.isEmpty else { throw .payloadMalformed("empty conversation key") }
            let kind: ConversationKind
            switch kindCode {
            case 1: kind = .direct(peer: key)
            case 2: kind = .group(groupId: key)
            default: throw .payloadMalformed("unknown conversation kind \(kindCode)")
            }
            guard seenConversations.insert(kind).inserted else { throw .payloadMalformed("duplicate conversation") }
            conversations.append(
                ArchivedConversation(kind: kind, title: try reader.optionalString(max: maxNameBytes), createdAt: try reader.i64()))
        }
        var messages: [ArchivedMessage] = []
        var seenServerIds = Set<UUID>()
        for _ in 0..<(try reader.count(minimumElementSize: 23)) {
            let conversation = try reader.u32()
            guard Int(conversation) < conversations.count else { throw .payloadMalformed("message of an unknown conversation") }
            let flags = try reader.u8()
            guard flags & ~Flag.all == 0 else { throw .payloadMalformed("unknown message flags") }
            var serverId: UUID? = nil
            if flags & Flag.serverId != 0 {
                let b = try reader.bytes(16)
                let id = UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
                guard seenServerIds.insert(id).inserted else { throw .payloadMalformed("duplicate server id") }
                serverId = id
            }
            let senderName = try reader.string(max: maxAccountBytes)
            guard !senderName.isEmpty else { throw .payloadMalformed("empty sender") }
            let sender = ProtocolAddress(name: senderName, deviceId: try reader.u32())
            let sentAt: Int64? = if flags & Flag.sentAt != 0 { try reader.i64() } else { nil }
            let receivedAt: Int64? = if flags & Flag.receivedAt != 0 { try reader.i64() } else { nil }
            let sortAt = try reader.i64()
            let body: String? = if flags & Flag.body != 0 { try reader.string(max: maxBodyBytes) } else { nil }
            let uid: String? = if flags & Flag.messageUid != 0 { try reader.string(max: maxMessageUidBytes) } else { nil }
            if let uid, uid.isEmpty { throw .payloadMalformed("empty message id") }
            var statuses: [String: DeliveryStatus] = [:]
            let statusCount = Int(try reader.u16())
            for _ in 0..<statusCount {
                let recipient = try reader.string(max: maxAccountBytes)
                let code = Int(try reader.u8())
                guard !recipient.isEmpty, code < statusOrder.count, statuses[recipient] == nil else {
                    throw .payloadMalformed("bad message status")
                }
                statuses[recipient] = statusOrder[code]
            }
            messages.append(
                ArchivedMessage(
                    conversation: conversation, serverId: serverId, sender: sender, outgoing: flags & Flag.outgoing != 0,
                    sentAt: sentAt, receivedAt: receivedAt, sortAt: sortAt, body: body,
                    couldNotDecrypt: flags & Flag.couldNotDecrypt != 0, statuses: statuses, messageUid: uid))
        }
        return HistoryArchive(conversations: conversations, messages: messages)
    }
}
