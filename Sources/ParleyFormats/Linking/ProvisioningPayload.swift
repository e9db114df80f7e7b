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
    /// Version 1: the archive inline (cut to the blob limit). Version 2 (written when `historyUpload` is set):
    /// the same fields, then the header of the history archive uploaded beside the blob.
    public static let version: UInt8 = 1
    public static let versionWithHistoryUpload: UInt8 = 2
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
    /// The history archive uploaded separately (version 2); nil: the history is `archive` (version 1).
    public var historyUpload: HistoryUploadHeader?

    public init(
        accountName: String, identity: IdentityKeyPair, existingDeviceId: UInt32, contacts: [ArchivedContact],
        identities: [ArchivedIdentity], archive: HistoryArchive, historyUpload: HistoryUploadHeader? = nil
    ) {
        self.historyUpload = historyUpload
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
    package func encode(limit: Int = Int.max) throws(LinkError) -> (bytes: SecretBytes, messages: Int) {
        // Capacity reserved up front: within the limit the buffer holding the private key is
        // never reallocated, so no unwiped copy is left behind in freed memory.
        var writer = PayloadWriter(capacity: min(limit, Self.maxPayloadBytes))
        defer { writer.wipe() }
        writer.bytes(Self.magic)
        writer.u8(historyUpload == nil ? Self.version : Self.versionWithHistoryUpload)
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
        // The archive goes last: its messages are taken newest first while they fit.
        let included = try archive.encode(into: &writer, limit: limit)
        if let header = historyUpload {
            guard header.digest.count == HistoryUpload.digestBytes else { throw .historyMalformed("digest size") }
            writer.u32(header.messageCount)
            writer.i64(Int64(bitPattern: header.plaintextBytes))
            writer.u32(header.chunkBytes)
            writer.bytes(header.digest)
            guard writer.count <= limit else { throw .payloadTooLarge(writer.count) }
        }
        return (writer.secret(), included)
    }

    // MARK: decoding

    /// Parses a decrypted payload. The identity key pair must be consistent (the private key
    /// must produce the public key).
    public static func decode(_ payload: SecretBytes) throws(LinkError) -> ProvisioningPayload {
        try payload.withBytes { (raw) throws(LinkError) -> ProvisioningPayload in
            var reader = PayloadReader(raw)
            guard try reader.bytes(magic.count) == magic else { throw .payloadMalformed("not a provisioning payload") }
            let version = try reader.u8()
            guard version == Self.version || version == Self.versionWithHistoryUpload else {
                throw .unsupportedPayloadVersion(version)
            }
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
            let archive = try HistoryArchive.decode(from: &reader)
            var historyUpload: HistoryUploadHeader? = nil
            if version == Self.versionWithHistoryUpload {
                let header = HistoryUploadHeader(
                    messageCount: try reader.u32(), plaintextBytes: UInt64(bitPattern: try reader.i64()), chunkBytes: try reader.u32(),
                    digest: try reader.bytes(HistoryUpload.digestBytes))
                guard header.chunkBytes > 0, header.plaintextBytes > 0, header.plaintextBytes <= UInt64(HistoryUpload.maxSealedBytes)
                else { throw .payloadMalformed("history archive header out of range") }
                historyUpload = header
            }
            guard reader.isAtEnd else { throw .payloadMalformed("trailing bytes") }
            return ProvisioningPayload(
                accountName: account, identity: IdentityKeyPair(privateKey: privateKey), existingDeviceId: existingDeviceId,
                contacts: contacts, identities: identities,
                archive: archive, historyUpload: historyUpload)
        }
    }
}
