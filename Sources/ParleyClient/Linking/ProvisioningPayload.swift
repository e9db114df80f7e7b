import Foundation
import ParleyCrypto
import ParleyProtocol

/// What the existing device gives the new one inside the encrypted provisioning blob: the
/// account's name and identity key pair, its own device id, the contacts with the identity keys
/// it recorded (and whether the user verified them), and the history archive.
///
/// Binary, versioned, strict (see `Specs/client-content.md` §7): every length is checked against
/// the bytes left, unknown versions, unknown flag bits, out-of-range values and trailing bytes are
/// refused.
public struct ProvisioningPayload: Sendable {
    public static let magic: [UInt8] = Array("PLNK".utf8)
    public static let version: UInt8 = 1
    /// The relay's limit on the provisioning blob (`RelayLimits.maxCiphertextBytes`, 256 KiB).
    public static let maxBlobBytes = 256 * 1024
    /// The payload limit: the blob limit minus the encryption's overhead.
    public static let maxPayloadBytes = maxBlobBytes - LinkCrypto.overhead

    static let maxAccountBytes = 256
    /// A message id is a UUID string; anything longer than this is refused.
    static let maxMessageUidBytes = 64
    static let maxNameBytes = 1024
    static let maxBodyBytes = maxBlobBytes

    public var accountName: String
    public var identity: IdentityKeyPair
    public var existingDeviceId: UInt32
    public var contacts: [ArchivedContact]
    public var identities: [ArchivedIdentity]
    public var archive: HistoryArchive

    public init(
        accountName: String, identity: IdentityKeyPair, existingDeviceId: UInt32, contacts: [ArchivedContact],
        identities: [ArchivedIdentity], archive: HistoryArchive
    ) {
        self.accountName = accountName
        self.identity = identity
        self.existingDeviceId = existingDeviceId
        self.contacts = contacts
        self.identities = identities
        self.archive = archive
    }

    // MARK: encoding

    /// The encoded payload, in wiped memory. When `limit` is given, messages are taken newest
    /// first only while the whole payload stays within it; the count that fit is returned.
    /// Throws `payloadTooLarge` if even the part without messages exceeds the limit.
    func encode(limit: Int = Int.max) throws(LinkError) -> (bytes: SecretBytes, messages: Int) {
        // Capacity reserved up front: within the limit the buffer holding the private key is
        // never reallocated, so no unwiped copy is left behind in freed memory.
        var writer = PayloadWriter(capacity: min(limit, Self.maxPayloadBytes))
        defer { writer.wipe() }
        writer.bytes(Self.magic)
        writer.u8(Self.version)
        try writer.string(accountName, max: Self.maxAccountBytes)
        writer.bytes(identity.identityKey.serialized)
        identity.privateKey.rawBytes().withBytes { writer.raw($0) }
        writer.u32(existingDeviceId)

        writer.u32(UInt32(contacts.count))
        for contact in contacts {
            try writer.string(contact.account, max: Self.maxAccountBytes)
            try writer.optionalString(contact.displayName, max: Self.maxNameBytes)
            writer.i64(contact.createdAt)
        }
        writer.u32(UInt32(identities.count))
        for identity in identities {
            try writer.string(identity.address.name, max: Self.maxAccountBytes)
            writer.u32(identity.address.deviceId)
            writer.bytes(identity.identityKey.serialized)
            writer.u8(identity.verified ? 1 : 0)
            writer.i64(identity.firstSeen)
        }
        writer.u32(UInt32(archive.conversations.count))
        for conversation in archive.conversations {
            switch conversation.kind {
            case .direct(let peer):
                writer.u8(1)
                try writer.string(peer, max: Self.maxAccountBytes)
            case .group(let groupId):
                writer.u8(2)
                try writer.string(groupId, max: Self.maxAccountBytes)
            }
            try writer.optionalString(conversation.title, max: Self.maxNameBytes)
            writer.i64(conversation.createdAt)
        }
        // The message count goes before the messages; patched once we know how many fit.
        let countOffset = writer.count
        writer.u32(0)
        guard writer.count <= limit else { throw .payloadTooLarge(writer.count) }
        var included = 0
        for message in archive.messages {
            var one = PayloadWriter()
            defer { one.wipe() }
            try Self.encode(message, conversations: archive.conversations.count, into: &one)
            if writer.count + one.count > limit { break }
            writer.append(one)
            included += 1
        }
        writer.patchU32(UInt32(included), at: countOffset)
        return (writer.secret(), included)
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
        try writer.string(message.sender.name, max: maxAccountBytes)
        writer.u32(message.sender.deviceId)
        if let sentAt = message.sentAt { writer.i64(sentAt) }
        if let receivedAt = message.receivedAt { writer.i64(receivedAt) }
        writer.i64(message.sortAt)
        if let body = message.body { try writer.string(body, max: maxBodyBytes) }
        if let uid = message.messageUid { try writer.string(uid, max: maxMessageUidBytes) }
        guard message.statuses.count <= Int(UInt16.max) else { throw .payloadMalformed("too many statuses") }
        writer.u16(UInt16(message.statuses.count))
        for (recipient, status) in message.statuses.sorted(by: { $0.key < $1.key }) {
            try writer.string(recipient, max: maxAccountBytes)
            writer.u8(Self.statusCode(status))
        }
    }

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

    static let statusOrder: [DeliveryStatus] = [.pending, .sent, .delivered, .read, .failed]

    static func statusCode(_ status: DeliveryStatus) -> UInt8 {
        UInt8(statusOrder.firstIndex(of: status) ?? 0)
    }

    // MARK: decoding

    /// Parses a decrypted payload. The identity key pair must be consistent (the private key
    /// must produce the public key).
    public static func decode(_ payload: SecretBytes) throws(LinkError) -> ProvisioningPayload {
        try payload.withBytes { (raw) throws(LinkError) -> ProvisioningPayload in
            var reader = PayloadReader(raw)
            guard try reader.bytes(magic.count) == magic else { throw .payloadMalformed("not a provisioning payload") }
            let version = try reader.u8()
            guard version == Self.version else { throw .unsupportedPayloadVersion(version) }
            let account = try reader.string(max: maxAccountBytes)
            guard !account.isEmpty else { throw .payloadMalformed("empty account name") }
            let publicBytes = try reader.bytes(PublicKey.serializedSize)
            let privateKey = try reader.privateKey()
            guard let identityKey = try? IdentityKey(serialized: publicBytes) else {
                throw .payloadMalformed("identity public key")
            }
            guard privateKey.publicKey == identityKey.publicKey else {
                throw .payloadMalformed("identity private key does not match its public key")
            }
            let existingDeviceId = try reader.u32()

            var contacts: [ArchivedContact] = []
            var seenContacts = Set<String>()
            for _ in 0..<(try reader.count(minimumElementSize: 13)) {
                let contact = ArchivedContact(
                    account: try reader.string(max: maxAccountBytes),
                    displayName: try reader.optionalString(max: maxNameBytes), createdAt: try reader.i64())
                guard !contact.account.isEmpty, seenContacts.insert(contact.account).inserted else {
                    throw .payloadMalformed("empty or duplicate contact")
                }
                contacts.append(contact)
            }
            var identities: [ArchivedIdentity] = []
            var seenIdentities = Set<ProtocolAddress>()
            for _ in 0..<(try reader.count(minimumElementSize: 50)) {
                let name = try reader.string(max: maxAccountBytes)
                let address = ProtocolAddress(name: name, deviceId: try reader.u32())
                guard let key = try? IdentityKey(serialized: try reader.bytes(PublicKey.serializedSize)) else {
                    throw .payloadMalformed("identity key of \(address)")
                }
                let verified = try reader.bool()
                let firstSeen = try reader.i64()
                guard !name.isEmpty, seenIdentities.insert(address).inserted else {
                    throw .payloadMalformed("empty or duplicate identity")
                }
                identities.append(ArchivedIdentity(address: address, identityKey: key, verified: verified, firstSeen: firstSeen))
            }
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
            guard reader.isAtEnd else { throw .payloadMalformed("trailing bytes") }
            return ProvisioningPayload(
                accountName: account, identity: IdentityKeyPair(privateKey: privateKey), existingDeviceId: existingDeviceId,
                contacts: contacts, identities: identities,
                archive: HistoryArchive(conversations: conversations, messages: messages))
        }
    }
}

/// Big-endian writer; `wipe()` zeroes what it wrote (the buffer holds the identity private key).
struct PayloadWriter {
    private(set) var buffer: [UInt8] = []

    init(capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    var count: Int { buffer.count }

    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u16(_ value: UInt16) { buffer += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func u32(_ value: UInt32) {
        buffer += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
    mutating func i64(_ value: Int64) {
        let bits = UInt64(bitPattern: value)
        for shift in stride(from: 56, through: 0, by: -8) { buffer.append(UInt8((bits >> UInt64(shift)) & 0xFF)) }
    }
    mutating func bytes(_ bytes: [UInt8]) { buffer += bytes }
    mutating func raw(_ bytes: UnsafeRawBufferPointer) { buffer.append(contentsOf: bytes) }
    mutating func append(_ other: PayloadWriter) { buffer += other.buffer }

    mutating func string(_ text: String, max: Int) throws(LinkError) {
        let utf8 = Array(text.utf8)
        guard utf8.count <= max else { throw .payloadMalformed("a text field is longer than \(max) bytes") }
        u32(UInt32(utf8.count))
        buffer += utf8
    }

    mutating func optionalString(_ text: String?, max: Int) throws(LinkError) {
        guard let text else { u8(0); return }
        u8(1)
        try string(text, max: max)
    }

    mutating func patchU32(_ value: UInt32, at offset: Int) {
        buffer[offset] = UInt8(value >> 24)
        buffer[offset + 1] = UInt8((value >> 16) & 0xFF)
        buffer[offset + 2] = UInt8((value >> 8) & 0xFF)
        buffer[offset + 3] = UInt8(value & 0xFF)
    }

    func secret() -> SecretBytes { SecretBytes(copying: buffer) }

    mutating func wipe() {
        for index in buffer.indices { buffer[index] = 0 }
        buffer.removeAll()
    }
}

/// Big-endian reader over the decrypted payload; every read is bounds-checked.
struct PayloadReader {
    private let raw: UnsafeRawBufferPointer
    private var offset = 0

    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    var isAtEnd: Bool { offset == raw.count }
    var remaining: Int { raw.count - offset }

    private mutating func take(_ count: Int) throws(LinkError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw .payloadMalformed("truncated") }
        let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)])
        offset += count
        return slice
    }

    mutating func u8() throws(LinkError) -> UInt8 { try take(1)[0] }
    mutating func u16() throws(LinkError) -> UInt16 {
        let b = try take(2)
        return UInt16(b[0]) << 8 | UInt16(b[1])
    }
    mutating func u32() throws(LinkError) -> UInt32 {
        let b = try take(4)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
    mutating func i64() throws(LinkError) -> Int64 {
        let b = try take(8)
        var bits: UInt64 = 0
        for byte in b { bits = bits << 8 | UInt64(byte) }
        return Int64(bitPattern: bits)
    }
    mutating func bool() throws(LinkError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw .payloadMalformed("a flag is not 0 or 1")
        }
    }
    mutating func bytes(_ count: Int) throws(LinkError) -> [UInt8] { Array(try take(count)) }

    /// The 32 private key bytes, copied straight into a `PrivateKey` (no array copy left behind).
    mutating func privateKey() throws(LinkError) -> PrivateKey {
        let b = try take(PrivateKey.size)
        let secret = SecretBytes(count: PrivateKey.size) { out in out.copyMemory(from: b) }
        guard let key = try? PrivateKey(bytes: secret) else {
            throw .payloadMalformed("identity private key")
        }
        return key
    }

    /// An element count, refused when the remaining bytes cannot hold that many elements.
    mutating func count(minimumElementSize: Int) throws(LinkError) -> Int {
        let value = Int(try u32())
        guard value <= remaining / minimumElementSize else { throw .payloadMalformed("count exceeds the payload") }
        return value
    }

    mutating func string(max: Int) throws(LinkError) -> String {
        let length = Int(try u32())
        guard length <= max else { throw .payloadMalformed("a text field is longer than \(max) bytes") }
        let b = try take(length)
        guard let text = String(validating: b, as: UTF8.self) else { throw .payloadMalformed("text is not UTF-8") }
        return text
    }

    mutating func optionalString(max: Int) throws(LinkError) -> String? {
        guard try bool() else { return nil }
        return try string(max: max)
    }
}
