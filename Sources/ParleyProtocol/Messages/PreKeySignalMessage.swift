import ParleyCrypto
import SwiftProtobuf
import Foundation

/// The first messages of a session, carrying what the receiver needs to run X3DH (version 3)
/// or PQXDH (version 4): `version || protobuf{pre_key_id?, base_key, identity_key, message,
/// registration_id, signed_pre_key_id, kyber_pre_key_id?, kyber_ciphertext?}`. The wrapper has
/// no MAC of its own; its fields are bound through the key agreement and the inner
/// SignalMessage's MAC.
///
/// Parsing follows libsignal: fields 2, 3, 4 and 6 are required; the Kyber fields 7 and 8 come
/// together or not at all, and a version-4 message must have them (`invalidKyber` otherwise).
/// The Kyber ciphertext is kept as received: its type byte and length are checked only when a
/// new session is made from it, after the prekey ids and the base key (Specs/protocol.md §4.9).
public struct PreKeySignalMessage: Sendable {
    public let messageVersion: UInt8
    public let registrationId: UInt32
    public let preKeyId: UInt32?
    public let signedPreKeyId: UInt32
    public let baseKey: PublicKey
    public let identityKey: IdentityKey
    public let message: SignalMessage
    /// The Kyber prekey the sender encapsulated to (version 4; may also be present, unused, in
    /// a version-3 message).
    public let kyberPreKeyId: UInt32?
    /// The serialized Kyber ciphertext, as received (present exactly when `kyberPreKeyId` is).
    public let kyberCiphertext: [UInt8]?
    public let serialized: [UInt8]

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard let first = bytes.first else { throw .malformed("empty PreKeySignalMessage") }
        let version = try VersionByte.check(first)
        let fields = try Fields.decode(bytes, protobuf: 1..<bytes.count)
        guard let baseKey = fields.baseKey, let identityKey = fields.identityKey, let inner = fields.message,
              let signedPreKeyId = fields.signedPreKeyId
        else {
            throw .malformed("PreKeySignalMessage missing a required field")
        }
        do { self.baseKey = try PublicKey(serialized: baseKey) } catch { throw .invalidKey("base key") }
        self.identityKey = try IdentityKey(serialized: Array(identityKey))
        message = try SignalMessage(serialized: Array(inner))
        switch (fields.kyberPreKeyId, fields.kyberCiphertext) {
        case (let id?, let ciphertext?):
            kyberPreKeyId = id
            kyberCiphertext = Array(ciphertext)
        case (nil, nil):
            guard version <= Limits.preKyberVersion else {
                throw .invalidKyber("version \(version) PreKeySignalMessage without a Kyber prekey")
            }
            kyberPreKeyId = nil
            kyberCiphertext = nil
        default:
            throw .invalidKyber("only one of kyber_pre_key_id and kyber_ciphertext is present")
        }
        messageVersion = version
        registrationId = fields.registrationId ?? 0
        preKeyId = fields.preKeyId
        self.signedPreKeyId = signedPreKeyId
        serialized = bytes
    }

    /// Builds the wrapper by hand (`ProtoWire`), fields in ascending tag order as swift-protobuf
    /// and prost write them: `version | [08 <pre_key_id>] | 12 21 <base_key> | 1A 21 <identity_key> |
    /// 22 <len> <message> | 28 <registration_id> | 30 <signed_pre_key_id> | [38 <kyber_pre_key_id> |
    /// 42 <len> <kyber_ciphertext>]`. The version is the inner message's.
    init(
        registrationId: UInt32, preKeyId: UInt32?, signedPreKeyId: UInt32, baseKey: PublicKey,
        identityKey: IdentityKey, message: SignalMessage, kyber: (id: UInt32, ciphertext: [UInt8])?
    ) throws(ProtocolError) {
        let base = baseKey.serialized
        let identity = identityKey.serialized
        let inner = message.serialized
        guard inner.count < ProtoWire.maxMessageSize, let innerLength = UInt32(exactly: inner.count) else {
            throw .malformed("PreKeySignalMessage encoding")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(
            1 + 6 + 2 * (1 + 5) + base.count + identity.count + 1 + 5 + inner.count + 3 * (1 + 5)
                + (kyber.map { 2 * (1 + 5) + $0.ciphertext.count } ?? 0))
        bytes.append(VersionByte.byte(for: message.messageVersion))
        func varint(_ value: UInt32) {
            var v = value
            while v >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            bytes.append(UInt8(v))
        }
        func field(_ number: UInt8, _ value: UInt32) {
            bytes.append(ProtoWire.tag(number, ProtoWire.wireVarint))
            varint(value)
        }
        func field(_ number: UInt8, _ value: [UInt8]) {
            bytes.append(ProtoWire.tag(number, ProtoWire.wireLengthDelimited))
            varint(UInt32(value.count))
            bytes.append(contentsOf: value)
        }
        if let preKeyId { field(1, preKeyId) }
        field(2, base)
        field(3, identity)
        bytes.append(ProtoWire.tag(4, ProtoWire.wireLengthDelimited))
        varint(innerLength)
        bytes.append(contentsOf: inner)
        field(5, registrationId)
        field(6, signedPreKeyId)
        if let kyber {
            guard kyber.ciphertext.count < ProtoWire.maxMessageSize else { throw .malformed("PreKeySignalMessage encoding") }
            field(7, kyber.id)
            field(8, kyber.ciphertext)
        }
        // swift-protobuf refuses to encode a protobuf of 2 GiB or more; so does this encoder.
        guard bytes.count - 1 < ProtoWire.maxMessageSize else { throw .malformed("PreKeySignalMessage encoding") }
        self.messageVersion = message.messageVersion
        self.registrationId = registrationId
        self.preKeyId = preKeyId
        self.signedPreKeyId = signedPreKeyId
        self.baseKey = baseKey
        self.identityKey = identityKey
        self.message = message
        self.kyberPreKeyId = kyber?.id
        self.kyberCiphertext = kyber?.ciphertext
        self.serialized = bytes
    }

    /// The protobuf's fields as found (nil when absent); see `SignalMessage.Fields`.
    struct Fields {
        var preKeyId: UInt32?
        var baseKey: ArraySlice<UInt8>?
        var identityKey: ArraySlice<UInt8>?
        var message: ArraySlice<UInt8>?
        var registrationId: UInt32?
        var signedPreKeyId: UInt32?
        var kyberPreKeyId: UInt32?
        var kyberCiphertext: ArraySlice<UInt8>?

        /// Decodes `bytes[protobuf]`: the fast path when it applies, else swift-protobuf.
        static func decode(_ bytes: [UInt8], protobuf range: Range<Int>) throws(ProtocolError) -> Fields {
            if let fields = fastPath(bytes, protobuf: range) { return fields }
            let proto: Parley_Wire_PreKeySignalMessage
            do {
                proto = try Parley_Wire_PreKeySignalMessage(serializedBytes: Array(bytes[range]))
            } catch {
                throw .malformed("PreKeySignalMessage protobuf")
            }
            return Fields(
                preKeyId: proto.hasPreKeyID ? proto.preKeyID : nil,
                baseKey: proto.hasBaseKey ? ArraySlice(proto.baseKey) : nil,
                identityKey: proto.hasIdentityKey ? ArraySlice(proto.identityKey) : nil,
                message: proto.hasMessage ? ArraySlice(proto.message) : nil,
                registrationId: proto.hasRegistrationID ? proto.registrationID : nil,
                signedPreKeyId: proto.hasSignedPreKeyID ? proto.signedPreKeyID : nil,
                kyberPreKeyId: proto.hasKyberPreKeyID ? proto.kyberPreKeyID : nil,
                kyberCiphertext: proto.hasKyberCiphertext ? ArraySlice(proto.kyberCiphertext) : nil)
        }

        /// The schema's eight fields only, one-byte tags, declared wire types; nil for anything else.
        static func fastPath(_ bytes: [UInt8], protobuf range: Range<Int>) -> Fields? {
            var fields = Fields()
            let ok: Bool = bytes.withUnsafeBytes { all in
                var reader = ProtoWire.Reader(UnsafeRawBufferPointer(rebasing: all[..<range.upperBound]), offset: range.lowerBound)
                while let tag = reader.byte() {
                    switch tag {
                    case ProtoWire.tag(1, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return false }
                        fields.preKeyId = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(2, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return false }
                        fields.baseKey = bytes[r]
                    case ProtoWire.tag(3, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return false }
                        fields.identityKey = bytes[r]
                    case ProtoWire.tag(4, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return false }
                        fields.message = bytes[r]
                    case ProtoWire.tag(5, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return false }
                        fields.registrationId = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(6, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return false }
                        fields.signedPreKeyId = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(7, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return false }
                        fields.kyberPreKeyId = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(8, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return false }
                        fields.kyberCiphertext = bytes[r]
                    default:
                        return false
                    }
                }
                return true
            }
            return ok ? fields : nil
        }
    }
}

/// What `SessionCipher.encrypt` produces: a PreKeySignalMessage until the peer has answered,
/// then plain SignalMessages.
public enum CiphertextMessage: Sendable {
    case signal(SignalMessage)
    case preKey(PreKeySignalMessage)

    /// libsignal's CiphertextMessage type numbers: 2 = SignalMessage (whisper), 3 = PreKey.
    public var type: Int {
        switch self {
        case .signal: return 2
        case .preKey: return 3
        }
    }

    public var serialized: [UInt8] {
        switch self {
        case .signal(let m): return m.serialized
        case .preKey(let m): return m.serialized
        }
    }
}
