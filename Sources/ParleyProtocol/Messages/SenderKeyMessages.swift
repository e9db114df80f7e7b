import ParleyCrypto
import SwiftProtobuf
import Foundation

/// The two Sender Key layouts. Both use version byte 0x33, the same key schedule, AES and
/// signature; they differ in how a message names the sender's state.
///
/// * **current** (libsignal's, what new groups use): a 16-byte distribution UUID and a 31-bit
///   chain id: `{1 distribution_uuid, 2 chain_id, 3 iteration, 4 ciphertext}`.
/// * **legacy** (libsignal-java, libsignal-protocol-c, python-axolotl): a 31-bit key id:
///   `{1 id, 2 iteration, 3 ciphertext}`.
///
/// A reader tells them apart by the wire type of field 1 (its first occurrence): a varint is the
/// old layout, anything else is read as the current layout (where a malformed message fails).
enum SenderKeyLayout {
    static func isLegacy(_ bytes: [UInt8], protobuf range: Range<Int>) -> Bool {
        bytes.withUnsafeBytes { all in
            ProtoWire.firstWireType(ofField: 1, in: UnsafeRawBufferPointer(rebasing: all[range])) == ProtoWire.wireVarint
        }
    }

    /// A distribution UUID from its 16 bytes (RFC 4122 byte order); nil for another length.
    static func uuid<C: Collection>(_ bytes: C) -> UUID? where C.Element == UInt8 {
        guard bytes.count == 16 else { return nil }
        let b = Array(bytes)
        return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }

    static func bytes(_ uuid: UUID) -> [UInt8] { withUnsafeBytes(of: uuid.uuid) { Array($0) } }
}

/// A group message under a sender key, signed (XEdDSA by the sender's signing key) over every
/// byte before the signature:
/// `0x33 || protobuf{distribution_uuid, chain_id, iteration, ciphertext} || signature(64)` in
/// libsignal's current layout, `0x33 || protobuf{id, iteration, ciphertext} || signature(64)`
/// in the old one (`SenderKeyLayout`).
public struct SenderKeyMessage: Sendable {
    public let messageVersion: UInt8
    /// The distribution the message belongs to (current layout); nil in the old layout.
    public let distributionId: UUID?
    /// The chain id (current layout) or key id (old layout) of the sender's state.
    public let chainId: UInt32
    public let iteration: UInt32
    public let ciphertext: [UInt8]
    public let serialized: [UInt8]

    /// The old layout's name for `chainId`.
    public var keyId: UInt32 { chainId }

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count > XEdDSA.signatureSize else { throw .malformed("SenderKeyMessage shorter than signature") }
        try VersionByte.checkSenderKey(bytes[0])
        let range = 1..<(bytes.count - XEdDSA.signatureSize)
        if SenderKeyLayout.isLegacy(bytes, protobuf: range) {
            let fields: (id: UInt32, iteration: UInt32, ciphertext: [UInt8])
            if let fast = Self.legacyFastPath(bytes, protobuf: range) {
                fields = fast
            } else {
                let proto: Parley_Wire_LegacySenderKeyMessage
                do {
                    proto = try Parley_Wire_LegacySenderKeyMessage(serializedBytes: Array(bytes[range]))
                } catch {
                    throw .malformed("SenderKeyMessage protobuf")
                }
                guard proto.hasID, proto.hasIteration, proto.hasCiphertext else {
                    throw .malformed("SenderKeyMessage missing a required field")
                }
                fields = (proto.id, proto.iteration, Array(proto.ciphertext))
            }
            distributionId = nil
            chainId = fields.id
            iteration = fields.iteration
            ciphertext = fields.ciphertext
        } else {
            let fields: (uuid: [UInt8], chainId: UInt32, iteration: UInt32, ciphertext: [UInt8])
            if let fast = Self.currentFastPath(bytes, protobuf: range) {
                fields = fast
            } else {
                let proto: Parley_Wire_SenderKeyMessage
                do {
                    proto = try Parley_Wire_SenderKeyMessage(serializedBytes: Array(bytes[range]))
                } catch {
                    throw .malformed("SenderKeyMessage protobuf")
                }
                guard proto.hasDistributionUuid, proto.hasChainID, proto.hasIteration, proto.hasCiphertext else {
                    throw .malformed("SenderKeyMessage missing a required field")
                }
                fields = (Array(proto.distributionUuid), proto.chainID, proto.iteration, Array(proto.ciphertext))
            }
            guard let uuid = SenderKeyLayout.uuid(fields.uuid) else { throw .malformed("distribution UUID is not 16 bytes") }
            distributionId = uuid
            chainId = fields.chainId
            iteration = fields.iteration
            ciphertext = fields.ciphertext
        }
        messageVersion = bytes[0] >> 4
        serialized = bytes
    }

    /// The old layout's three fields, each present, one-byte tags and declared wire types (see
    /// `ProtoWire`); nil for anything else, which swift-protobuf then decides.
    private static func legacyFastPath(_ bytes: [UInt8], protobuf range: Range<Int>) -> (id: UInt32, iteration: UInt32, ciphertext: [UInt8])? {
        bytes.withUnsafeBytes { all -> (UInt32, UInt32, [UInt8])? in
            var reader = ProtoWire.Reader(UnsafeRawBufferPointer(rebasing: all[..<range.upperBound]), offset: range.lowerBound)
            var id: UInt32? = nil, iteration: UInt32? = nil, body: Range<Int>? = nil
            while let tag = reader.byte() {
                switch tag {
                case ProtoWire.tag(1, ProtoWire.wireVarint):
                    guard let v = reader.varint() else { return nil }
                    id = UInt32(truncatingIfNeeded: v)
                case ProtoWire.tag(2, ProtoWire.wireVarint):
                    guard let v = reader.varint() else { return nil }
                    iteration = UInt32(truncatingIfNeeded: v)
                case ProtoWire.tag(3, ProtoWire.wireLengthDelimited):
                    guard let r = reader.lengthDelimited() else { return nil }
                    body = r
                default:
                    return nil
                }
            }
            guard let id, let iteration, let body else { return nil }
            return (id, iteration, Array(all[body]))
        }
    }

    /// The current layout's four fields, each present; nil for anything else.
    private static func currentFastPath(
        _ bytes: [UInt8], protobuf range: Range<Int>
    ) -> (uuid: [UInt8], chainId: UInt32, iteration: UInt32, ciphertext: [UInt8])? {
        bytes.withUnsafeBytes { all -> ([UInt8], UInt32, UInt32, [UInt8])? in
            var reader = ProtoWire.Reader(UnsafeRawBufferPointer(rebasing: all[..<range.upperBound]), offset: range.lowerBound)
            var uuid: Range<Int>? = nil, chain: UInt32? = nil, iteration: UInt32? = nil, body: Range<Int>? = nil
            while let tag = reader.byte() {
                switch tag {
                case ProtoWire.tag(1, ProtoWire.wireLengthDelimited):
                    guard let r = reader.lengthDelimited() else { return nil }
                    uuid = r
                case ProtoWire.tag(2, ProtoWire.wireVarint):
                    guard let v = reader.varint() else { return nil }
                    chain = UInt32(truncatingIfNeeded: v)
                case ProtoWire.tag(3, ProtoWire.wireVarint):
                    guard let v = reader.varint() else { return nil }
                    iteration = UInt32(truncatingIfNeeded: v)
                case ProtoWire.tag(4, ProtoWire.wireLengthDelimited):
                    guard let r = reader.lengthDelimited() else { return nil }
                    body = r
                default:
                    return nil
                }
            }
            guard let uuid, let chain, let iteration, let body else { return nil }
            return (Array(all[uuid]), chain, iteration, Array(all[body]))
        }
    }

    /// Builds and signs the message in one buffer, byte for byte what swift-protobuf (and prost)
    /// write: `0x33 | 0A 10 <uuid 16> | 10 <chain_id> | 18 <iteration> | 22 <len> <body> | <signature 64>`
    /// with a distribution id, `0x33 | 08 <id> | 10 <iteration> | 1A <len> <body> | <signature 64>`
    /// without (the old layout).
    init(
        distributionId: UUID?, chainId: UInt32, iteration: UInt32, ciphertext: [UInt8], signingKey: XEdDSA.SigningKey,
        random: any RandomSource
    ) throws(ProtocolError) {
        guard ciphertext.count < ProtoWire.maxMessageSize, let bodyLength = UInt32(exactly: ciphertext.count) else {
            throw .malformed("SenderKeyMessage encoding")
        }
        let uuid = distributionId.map(SenderKeyLayout.bytes)
        let headerCount = 1 + (uuid.map { 2 + $0.count } ?? 0) + 1 + ProtoWire.varintSize(chainId) + 1 + ProtoWire.varintSize(iteration)
            + 1 + ProtoWire.varintSize(bodyLength)
        guard headerCount - 1 + ciphertext.count < ProtoWire.maxMessageSize else { throw .malformed("SenderKeyMessage encoding") }
        let signedCount = headerCount + ciphertext.count
        var nonce = random.draw(XEdDSA.randomSize, purpose: .signatureNonce)
        defer { nonce.withUnsafeMutableBytes { SecretBytes.wipe($0) } }
        var failure: ProtocolError? = nil
        let bytes = [UInt8](unsafeUninitializedCapacity: signedCount + XEdDSA.signatureSize) { buffer, count in
            count = 0
            guard let p = buffer.baseAddress else { failure = .crypto(.cipherFailure); return }
            var n = 0
            p[n] = VersionByte.byte(for: Limits.senderKeyVersion); n += 1
            // Field numbers: (uuid, chain, iteration, body) in the current layout, (id, iteration, body) in the old.
            let first: UInt8
            if let uuid {
                p[n] = ProtoWire.tag(1, ProtoWire.wireLengthDelimited); n += 1
                p[n] = UInt8(uuid.count); n += 1
                for b in uuid { p[n] = b; n += 1 }
                first = 2
            } else {
                first = 1
            }
            p[n] = ProtoWire.tag(first, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(chainId, at: p + n)
            p[n] = ProtoWire.tag(first + 1, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(iteration, at: p + n)
            p[n] = ProtoWire.tag(first + 2, ProtoWire.wireLengthDelimited); n += 1
            n += ProtoWire.writeVarint(bodyLength, at: p + n)
            ciphertext.withUnsafeBufferPointer { c in
                if let base = c.baseAddress { (p + n).update(from: base, count: c.count) }
            }
            n += ciphertext.count
            let raw = UnsafeMutableRawBufferPointer(buffer)
            do throws(CryptoError) {
                try signingKey.sign(
                    UnsafeRawBufferPointer(rebasing: raw[0..<n]), random: nonce,
                    into: UnsafeMutableRawBufferPointer(rebasing: raw[n..<(n + XEdDSA.signatureSize)]))
                count = n + XEdDSA.signatureSize
            } catch {
                failure = .crypto(error)
            }
        }
        if let failure { throw failure }
        self.messageVersion = Limits.senderKeyVersion
        self.distributionId = distributionId
        self.chainId = chainId
        self.iteration = iteration
        self.ciphertext = ciphertext
        self.serialized = bytes
    }

    func verifySignature(_ key: XEdDSA.VerifyingKey) -> Bool {
        serialized.withUnsafeBytes { all in
            let split = all.count - XEdDSA.signatureSize
            return key.verify(
                signature: UnsafeRawBufferPointer(rebasing: all[split...]), message: UnsafeRawBufferPointer(rebasing: all[..<split]))
        }
    }
}

/// Hands a sender key to a group member (over a pairwise session), unsigned; its authenticity
/// comes from the pairwise session that carries it. `0x33 || protobuf{distribution_uuid,
/// chain_id, iteration, chain_key, signing_key}` in libsignal's current layout,
/// `0x33 || protobuf{id, iteration, chain_key, signing_key}` in the old one.
public struct SenderKeyDistributionMessage: Sendable {
    public let messageVersion: UInt8
    /// The distribution (current layout); nil in the old layout.
    public let distributionId: UUID?
    /// The chain id (current layout) or key id (old layout).
    public let chainId: UInt32
    public let iteration: UInt32
    public let chainKey: [UInt8]
    public let signingKey: PublicKey
    public let serialized: [UInt8]

    /// The old layout's name for `chainId`.
    public var keyId: UInt32 { chainId }

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard let first = bytes.first else { throw .malformed("empty SenderKeyDistributionMessage") }
        try VersionByte.checkSenderKey(first)
        let fields: (uuid: [UInt8]?, chainId: UInt32, iteration: UInt32, chainKey: Data, signingKey: Data)
        do {
            if SenderKeyLayout.isLegacy(bytes, protobuf: 1..<bytes.count) {
                let proto = try Parley_Wire_LegacySenderKeyDistributionMessage(serializedBytes: Array(bytes[1...]))
                guard proto.hasID, proto.hasIteration, proto.hasChainKey, proto.hasSigningKey else {
                    throw ProtocolError.malformed("SenderKeyDistributionMessage missing a required field")
                }
                fields = (nil, proto.id, proto.iteration, proto.chainKey, proto.signingKey)
            } else {
                let proto = try Parley_Wire_SenderKeyDistributionMessage(serializedBytes: Array(bytes[1...]))
                guard proto.hasDistributionUuid, proto.hasChainID, proto.hasIteration, proto.hasChainKey, proto.hasSigningKey else {
                    throw ProtocolError.malformed("SenderKeyDistributionMessage missing a required field")
                }
                fields = (Array(proto.distributionUuid), proto.chainID, proto.iteration, proto.chainKey, proto.signingKey)
            }
        } catch let error as ProtocolError {
            throw error
        } catch {
            throw .malformed("SenderKeyDistributionMessage protobuf")
        }
        if let uuid = fields.uuid {
            guard let id = SenderKeyLayout.uuid(uuid) else { throw .malformed("distribution UUID is not 16 bytes") }
            distributionId = id
        } else {
            distributionId = nil
        }
        guard fields.chainKey.count == 32 else { throw .malformed("sender chain key is not 32 bytes") }
        do { signingKey = try PublicKey(serialized: Array(fields.signingKey)) } catch { throw .invalidKey("signing key") }
        messageVersion = first >> 4
        chainId = fields.chainId
        iteration = fields.iteration
        chainKey = Array(fields.chainKey)
        serialized = bytes
    }

    init(distributionId: UUID?, chainId: UInt32, iteration: UInt32, chainKey: [UInt8], signingKey: PublicKey) throws(ProtocolError) {
        let body: [UInt8]
        do {
            if let distributionId {
                var proto = Parley_Wire_SenderKeyDistributionMessage()
                proto.distributionUuid = Data(SenderKeyLayout.bytes(distributionId))
                proto.chainID = chainId
                proto.iteration = iteration
                proto.chainKey = Data(chainKey)
                proto.signingKey = Data(signingKey.serialized)
                body = try proto.serializedBytes()
            } else {
                var proto = Parley_Wire_LegacySenderKeyDistributionMessage()
                proto.id = chainId
                proto.iteration = iteration
                proto.chainKey = Data(chainKey)
                proto.signingKey = Data(signingKey.serialized)
                body = try proto.serializedBytes()
            }
        } catch {
            throw .malformed("SenderKeyDistributionMessage encoding")
        }
        serialized = [VersionByte.byte(for: Limits.senderKeyVersion)] + body
        self.messageVersion = Limits.senderKeyVersion
        self.distributionId = distributionId
        self.chainId = chainId
        self.iteration = iteration
        self.chainKey = chainKey
        self.signingKey = signingKey
    }
}
