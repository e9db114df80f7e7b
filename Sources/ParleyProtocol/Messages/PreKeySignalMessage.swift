import ParleyCrypto
import SwiftProtobuf
import Foundation

/// The first messages of a session, carrying what the receiver needs to run X3DH:
/// `0x33 || protobuf{pre_key_id?, base_key, identity_key, message, registration_id,
/// signed_pre_key_id}`. The wrapper has no MAC of its own; its fields are bound through the key
/// agreement and the inner SignalMessage's MAC.
public struct PreKeySignalMessage: Sendable {
    public let messageVersion: UInt8
    public let registrationId: UInt32
    public let preKeyId: UInt32?
    public let signedPreKeyId: UInt32
    public let baseKey: PublicKey
    public let identityKey: IdentityKey
    public let message: SignalMessage
    public let serialized: [UInt8]

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard let first = bytes.first else { throw .malformed("empty PreKeySignalMessage") }
        try VersionByte.check(first)
        let fields = try Fields.decode(bytes, protobuf: 1..<bytes.count)
        guard let baseKey = fields.baseKey, let identityKey = fields.identityKey, let inner = fields.message,
              let signedPreKeyId = fields.signedPreKeyId
        else {
            throw .malformed("PreKeySignalMessage missing a required field")
        }
        do { self.baseKey = try PublicKey(serialized: baseKey) } catch { throw .invalidKey("base key") }
        self.identityKey = try IdentityKey(serialized: Array(identityKey))
        message = try SignalMessage(serialized: Array(inner))
        messageVersion = first >> 4
        registrationId = fields.registrationId ?? 0
        preKeyId = fields.preKeyId
        self.signedPreKeyId = signedPreKeyId
        serialized = bytes
    }

    /// Builds the wrapper by hand (`ProtoWire`), fields in ascending tag order as swift-protobuf
    /// writes them: `0x33 | [08 <pre_key_id>] | 12 21 <base_key> | 1A 21 <identity_key> |
    /// 22 <len> <message> | 28 <registration_id> | 30 <signed_pre_key_id>`.
    init(
        registrationId: UInt32, preKeyId: UInt32?, signedPreKeyId: UInt32, baseKey: PublicKey,
        identityKey: IdentityKey, message: SignalMessage
    ) throws(ProtocolError) {
        let base = baseKey.serialized
        let identity = identityKey.serialized
        let inner = message.serialized
        guard inner.count < ProtoWire.maxMessageSize, let innerLength = UInt32(exactly: inner.count) else {
            throw .malformed("PreKeySignalMessage encoding")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(1 + 6 + 2 * (1 + 5) + base.count + identity.count + 1 + 5 + inner.count + 3 * (1 + 5))
        bytes.append(VersionByte.current)
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
        // swift-protobuf refuses to encode a protobuf of 2 GiB or more; so does this encoder.
        guard bytes.count - 1 < ProtoWire.maxMessageSize else { throw .malformed("PreKeySignalMessage encoding") }
        self.messageVersion = Limits.currentVersion
        self.registrationId = registrationId
        self.preKeyId = preKeyId
        self.signedPreKeyId = signedPreKeyId
        self.baseKey = baseKey
        self.identityKey = identityKey
        self.message = message
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
                signedPreKeyId: proto.hasSignedPreKeyID ? proto.signedPreKeyID : nil)
        }

        /// The schema's six fields only, one-byte tags, declared wire types; nil for anything else.
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
