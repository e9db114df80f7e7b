import ParleyCrypto
import SwiftProtobuf
import Foundation

/// A Double Ratchet message: `0x33 || protobuf{ratchet_key, counter, previous_counter,
/// ciphertext} || mac[0:8]`, the MAC being HMAC-SHA256(mac_key, sender_identity ||
/// receiver_identity || version || protobuf) truncated to 8 bytes.
public struct SignalMessage: Sendable {
    public let messageVersion: UInt8
    public let senderRatchetKey: PublicKey
    public let counter: UInt32
    public let previousCounter: UInt32
    public let ciphertext: [UInt8]
    /// The complete message as it travels, MAC included.
    public let serialized: [UInt8]

    /// Parses a received message. The MAC is checked later, against a session's keys.
    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count > Limits.macLength else { throw .malformed("SignalMessage shorter than version and MAC") }
        try VersionByte.check(bytes[0])
        let proto: Parley_Wire_SignalMessage
        do {
            proto = try Parley_Wire_SignalMessage(serializedBytes: Array(bytes[1..<(bytes.count - Limits.macLength)]))
        } catch {
            throw .malformed("SignalMessage protobuf")
        }
        guard proto.hasRatchetKey, proto.hasCounter, proto.hasCiphertext else {
            throw .malformed("SignalMessage missing a required field")
        }
        do {
            senderRatchetKey = try PublicKey(serialized: Array(proto.ratchetKey))
        } catch {
            throw .invalidKey("ratchet key")
        }
        messageVersion = bytes[0] >> 4
        counter = proto.counter
        previousCounter = proto.previousCounter
        ciphertext = Array(proto.ciphertext)
        serialized = bytes
    }

    /// Builds and MACs an outgoing message.
    init(
        macKey: MessageKeys, senderRatchetKey: PublicKey, counter: UInt32, previousCounter: UInt32,
        ciphertext: [UInt8], senderIdentity: IdentityKey, receiverIdentity: IdentityKey
    ) throws(ProtocolError) {
        var proto = Parley_Wire_SignalMessage()
        proto.ratchetKey = Data(senderRatchetKey.serialized)
        proto.counter = counter
        proto.previousCounter = previousCounter
        proto.ciphertext = Data(ciphertext)
        let body: [UInt8]
        do { body = try proto.serializedBytes() } catch { throw .malformed("SignalMessage encoding") }
        var bytes = [UInt8]()
        bytes.reserveCapacity(1 + body.count + Limits.macLength)
        bytes.append(VersionByte.current)
        bytes.append(contentsOf: body)
        let mac = try Self.mac(over: bytes, senderIdentity: senderIdentity, receiverIdentity: receiverIdentity, keys: macKey)
        bytes.append(contentsOf: mac)
        self.messageVersion = Limits.currentVersion
        self.senderRatchetKey = senderRatchetKey
        self.counter = counter
        self.previousCounter = previousCounter
        self.ciphertext = ciphertext
        self.serialized = bytes
    }

    /// True when the trailing 8 bytes are the MAC of the rest under `keys` (constant time).
    func verifyMAC(senderIdentity: IdentityKey, receiverIdentity: IdentityKey, keys: MessageKeys) throws(ProtocolError) -> Bool {
        let split = serialized.count - Limits.macLength
        let expected = try Self.mac(
            over: serialized[0..<split], senderIdentity: senderIdentity, receiverIdentity: receiverIdentity, keys: keys)
        return ConstantTime.equals(expected, serialized[split...])
    }

    private static func mac<B: ByteView>(
        over versionAndBody: B, senderIdentity: IdentityKey, receiverIdentity: IdentityKey, keys: MessageKeys
    ) throws(ProtocolError) -> [UInt8] {
        try keys.withMacKey { (macKey) throws(ProtocolError) -> [UInt8] in
            var stream = HMACSHA256(key: macKey).start()
            stream.update(senderIdentity.serialized)
            stream.update(receiverIdentity.serialized)
            versionAndBody.withBytes { stream.update($0) }
            var full = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            return withUnsafeMutableBytes(of: &full) { buf in
                stream.finish(into: buf)
                return Array(buf[0..<Limits.macLength])
            }
        }
    }
}
