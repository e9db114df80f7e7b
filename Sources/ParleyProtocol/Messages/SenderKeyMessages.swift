import ParleyCrypto
import SwiftProtobuf
import Foundation

/// A group message under a sender key: `0x33 || protobuf{id, iteration, ciphertext} ||
/// signature(64)`, the signature (XEdDSA by the sender's signing key) covering every byte
/// before it.
public struct SenderKeyMessage: Sendable {
    public let messageVersion: UInt8
    public let keyId: UInt32
    public let iteration: UInt32
    public let ciphertext: [UInt8]
    public let serialized: [UInt8]

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count > XEdDSA.signatureSize else { throw .malformed("SenderKeyMessage shorter than signature") }
        try VersionByte.check(bytes[0])
        let range = 1..<(bytes.count - XEdDSA.signatureSize)
        let fields: (id: UInt32, iteration: UInt32, ciphertext: [UInt8])
        if let fast = Self.fastPath(bytes, protobuf: range) {
            fields = fast
        } else {
            let proto: Parley_Wire_SenderKeyMessage
            do {
                proto = try Parley_Wire_SenderKeyMessage(serializedBytes: Array(bytes[range]))
            } catch {
                throw .malformed("SenderKeyMessage protobuf")
            }
            guard proto.hasID, proto.hasIteration, proto.hasCiphertext else {
                throw .malformed("SenderKeyMessage missing a required field")
            }
            fields = (proto.id, proto.iteration, Array(proto.ciphertext))
        }
        messageVersion = bytes[0] >> 4
        keyId = fields.id
        iteration = fields.iteration
        ciphertext = fields.ciphertext
        serialized = bytes
    }

    /// The schema's three fields, each present, one-byte tags and declared wire types (see
    /// `ProtoWire`); nil for anything else, which swift-protobuf then decides.
    private static func fastPath(_ bytes: [UInt8], protobuf range: Range<Int>) -> (id: UInt32, iteration: UInt32, ciphertext: [UInt8])? {
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

    /// Builds and signs the message in one buffer, byte for byte what swift-protobuf writes:
    /// `0x33 | 08 <varint id> | 10 <varint iteration> | 1A <varint len> <body> | <signature 64>`.
    init(keyId: UInt32, iteration: UInt32, ciphertext: [UInt8], signingKey: XEdDSA.SigningKey, random: any RandomSource) throws(ProtocolError) {
        guard ciphertext.count < ProtoWire.maxMessageSize, let bodyLength = UInt32(exactly: ciphertext.count) else {
            throw .malformed("SenderKeyMessage encoding")
        }
        let headerCount = 1 + 1 + ProtoWire.varintSize(keyId) + 1 + ProtoWire.varintSize(iteration) + 1 + ProtoWire.varintSize(bodyLength)
        guard headerCount - 1 + ciphertext.count < ProtoWire.maxMessageSize else { throw .malformed("SenderKeyMessage encoding") }
        let signedCount = headerCount + ciphertext.count
        var nonce = random.draw(XEdDSA.randomSize, purpose: .signatureNonce)
        defer { nonce.withUnsafeMutableBytes { SecretBytes.wipe($0) } }
        var failure: ProtocolError? = nil
        let bytes = [UInt8](unsafeUninitializedCapacity: signedCount + XEdDSA.signatureSize) { buffer, count in
            count = 0
            guard let p = buffer.baseAddress else { failure = .crypto(.cipherFailure); return }
            var n = 0
            p[n] = VersionByte.current; n += 1
            p[n] = ProtoWire.tag(1, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(keyId, at: p + n)
            p[n] = ProtoWire.tag(2, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(iteration, at: p + n)
            p[n] = ProtoWire.tag(3, ProtoWire.wireLengthDelimited); n += 1
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
        self.messageVersion = Limits.currentVersion
        self.keyId = keyId
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

/// Hands a sender key to a group member (over a pairwise session): `0x33 || protobuf{id,
/// iteration, chain_key, signing_key}`. Not signed; its authenticity comes from the pairwise
/// session that carries it.
public struct SenderKeyDistributionMessage: Sendable {
    public let messageVersion: UInt8
    public let keyId: UInt32
    public let iteration: UInt32
    public let chainKey: [UInt8]
    public let signingKey: PublicKey
    public let serialized: [UInt8]

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard let first = bytes.first else { throw .malformed("empty SenderKeyDistributionMessage") }
        try VersionByte.check(first)
        let proto: Parley_Wire_SenderKeyDistributionMessage
        do {
            proto = try Parley_Wire_SenderKeyDistributionMessage(serializedBytes: Array(bytes[1...]))
        } catch {
            throw .malformed("SenderKeyDistributionMessage protobuf")
        }
        guard proto.hasID, proto.hasIteration, proto.hasChainKey, proto.hasSigningKey else {
            throw .malformed("SenderKeyDistributionMessage missing a required field")
        }
        guard proto.chainKey.count == 32 else { throw .malformed("sender chain key is not 32 bytes") }
        do { signingKey = try PublicKey(serialized: Array(proto.signingKey)) } catch { throw .invalidKey("signing key") }
        messageVersion = first >> 4
        keyId = proto.id
        iteration = proto.iteration
        chainKey = Array(proto.chainKey)
        serialized = bytes
    }

    init(keyId: UInt32, iteration: UInt32, chainKey: [UInt8], signingKey: PublicKey) throws(ProtocolError) {
        var proto = Parley_Wire_SenderKeyDistributionMessage()
        proto.id = keyId
        proto.iteration = iteration
        proto.chainKey = Data(chainKey)
        proto.signingKey = Data(signingKey.serialized)
        do { serialized = [VersionByte.current] + (try proto.serializedBytes() as [UInt8]) } catch {
            throw .malformed("SenderKeyDistributionMessage encoding")
        }
        self.messageVersion = Limits.currentVersion
        self.keyId = keyId
        self.iteration = iteration
        self.chainKey = chainKey
        self.signingKey = signingKey
    }
}
