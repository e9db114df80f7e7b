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
        let proto: Parley_Wire_SenderKeyMessage
        do {
            proto = try Parley_Wire_SenderKeyMessage(serializedBytes: Array(bytes[1..<(bytes.count - XEdDSA.signatureSize)]))
        } catch {
            throw .malformed("SenderKeyMessage protobuf")
        }
        guard proto.hasID, proto.hasIteration, proto.hasCiphertext else {
            throw .malformed("SenderKeyMessage missing a required field")
        }
        messageVersion = bytes[0] >> 4
        keyId = proto.id
        iteration = proto.iteration
        ciphertext = Array(proto.ciphertext)
        serialized = bytes
    }

    init(keyId: UInt32, iteration: UInt32, ciphertext: [UInt8], signingKey: PrivateKey, random: any RandomSource) throws(ProtocolError) {
        var proto = Parley_Wire_SenderKeyMessage()
        proto.id = keyId
        proto.iteration = iteration
        proto.ciphertext = Data(ciphertext)
        var bytes: [UInt8]
        do { bytes = [VersionByte.current] + (try proto.serializedBytes() as [UInt8]) } catch {
            throw .malformed("SenderKeyMessage encoding")
        }
        do { bytes += try XEdDSA.sign(bytes, with: signingKey, using: random) } catch { throw .crypto(error) }
        self.messageVersion = Limits.currentVersion
        self.keyId = keyId
        self.iteration = iteration
        self.ciphertext = ciphertext
        self.serialized = bytes
    }

    func verifySignature(_ key: XEdDSA.VerifyingKey) -> Bool {
        let split = serialized.count - XEdDSA.signatureSize
        return key.verify(Array(serialized[split...]), of: serialized[0..<split])
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
