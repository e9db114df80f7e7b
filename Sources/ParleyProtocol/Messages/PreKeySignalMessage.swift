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
        let proto: Parley_Wire_PreKeySignalMessage
        do {
            proto = try Parley_Wire_PreKeySignalMessage(serializedBytes: Array(bytes[1...]))
        } catch {
            throw .malformed("PreKeySignalMessage protobuf")
        }
        guard proto.hasBaseKey, proto.hasIdentityKey, proto.hasMessage, proto.hasSignedPreKeyID else {
            throw .malformed("PreKeySignalMessage missing a required field")
        }
        do { baseKey = try PublicKey(serialized: Array(proto.baseKey)) } catch { throw .invalidKey("base key") }
        identityKey = try IdentityKey(serialized: Array(proto.identityKey))
        message = try SignalMessage(serialized: Array(proto.message))
        messageVersion = first >> 4
        registrationId = proto.registrationID
        preKeyId = proto.hasPreKeyID ? proto.preKeyID : nil
        signedPreKeyId = proto.signedPreKeyID
        serialized = bytes
    }

    init(
        registrationId: UInt32, preKeyId: UInt32?, signedPreKeyId: UInt32, baseKey: PublicKey,
        identityKey: IdentityKey, message: SignalMessage
    ) throws(ProtocolError) {
        var proto = Parley_Wire_PreKeySignalMessage()
        proto.registrationID = registrationId
        if let preKeyId { proto.preKeyID = preKeyId }
        proto.signedPreKeyID = signedPreKeyId
        proto.baseKey = Data(baseKey.serialized)
        proto.identityKey = Data(identityKey.serialized)
        proto.message = Data(message.serialized)
        let body: [UInt8]
        do { body = try proto.serializedBytes() } catch { throw .malformed("PreKeySignalMessage encoding") }
        self.messageVersion = Limits.currentVersion
        self.registrationId = registrationId
        self.preKeyId = preKeyId
        self.signedPreKeyId = signedPreKeyId
        self.baseKey = baseKey
        self.identityKey = identityKey
        self.message = message
        self.serialized = [VersionByte.current] + body
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
