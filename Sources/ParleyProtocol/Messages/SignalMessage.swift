import ParleyCrypto
import SwiftProtobuf
import Foundation

/// A Double Ratchet message: `version || protobuf{ratchet_key, counter, previous_counter,
/// ciphertext} || mac[0:8]`, the MAC being HMAC-SHA256(mac_key, sender_identity ||
/// receiver_identity || version || protobuf) truncated to 8 bytes. The version byte is the
/// session's: 0x33 (X3DH) or 0x44 (PQXDH); the layout is the same.
///
/// The protobuf is written and, in the common case, read by hand (`ProtoWire`): the message is
/// built in one buffer (header, AES output, MAC) and a received one is used in place.
public struct SignalMessage: Sendable {
    public let messageVersion: UInt8
    public let senderRatchetKey: PublicKey
    public let counter: UInt32
    public let previousCounter: UInt32
    /// The AES-256-CBC body (a view into `serialized`, or into the decoded protobuf).
    let body: ArraySlice<UInt8>
    /// The complete message as it travels, MAC included.
    public let serialized: [UInt8]

    /// The AES-256-CBC body.
    public var ciphertext: [UInt8] { Array(body) }

    /// Parses a received message. The MAC is checked later, against a session's keys.
    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.count > Limits.macLength else { throw .malformed("SignalMessage shorter than version and MAC") }
        let version = try VersionByte.check(bytes[0])
        let fields = try Fields.decode(bytes, protobuf: 1..<(bytes.count - Limits.macLength))
        guard let ratchetKey = fields.ratchetKey, let counter = fields.counter, let body = fields.ciphertext else {
            throw .malformed("SignalMessage missing a required field")
        }
        do {
            senderRatchetKey = try PublicKey(serialized: ratchetKey)
        } catch {
            throw .invalidKey("ratchet key")
        }
        messageVersion = version
        self.counter = counter
        previousCounter = fields.previousCounter ?? 0
        self.body = body
        serialized = bytes
    }

    private init(
        version: UInt8, senderRatchetKey: PublicKey, counter: UInt32, previousCounter: UInt32, body: ArraySlice<UInt8>,
        serialized: [UInt8]
    ) {
        self.messageVersion = version
        self.senderRatchetKey = senderRatchetKey
        self.counter = counter
        self.previousCounter = previousCounter
        self.body = body
        self.serialized = serialized
    }

    /// Encrypts `plaintext` under `keys` and builds the MACed message, all in one buffer:
    /// `version | 0A 21 <ratchet key> | 10 <counter> | 18 <previous counter> | 22 <len> <AES body> | <mac 8>`,
    /// the version byte being 0x33 or 0x44 (`version` 3 or 4).
    static func encrypt(
        _ plaintext: [UInt8], version: UInt8, keys: MessageKeys, senderRatchetKey: PublicKey, previousCounter: UInt32,
        senderIdentity: IdentityKey, receiverIdentity: IdentityKey
    ) throws(ProtocolError) -> SignalMessage {
        let key = senderRatchetKey.serialized
        let counter = keys.counter
        let bodyCount = AES256CBC.paddedCount(plaintext.count)
        // swift-protobuf refuses to encode a protobuf of 2 GiB or more; so does this encoder.
        guard bodyCount < ProtoWire.maxMessageSize, let bodyLength = UInt32(exactly: bodyCount) else {
            throw .malformed("SignalMessage encoding")
        }
        let headerCount = 1 + 1 + ProtoWire.varintSize(UInt32(key.count)) + key.count
            + 1 + ProtoWire.varintSize(counter) + 1 + ProtoWire.varintSize(previousCounter)
            + 1 + ProtoWire.varintSize(bodyLength)
        guard headerCount - 1 + bodyCount < ProtoWire.maxMessageSize else { throw .malformed("SignalMessage encoding") }
        let total = headerCount + bodyCount + Limits.macLength
        var failure: ProtocolError? = nil
        let bytes = [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            count = 0
            guard let p = buffer.baseAddress else { failure = .crypto(.cipherFailure); return }
            var n = 0
            p[n] = VersionByte.byte(for: version); n += 1
            p[n] = ProtoWire.tag(1, ProtoWire.wireLengthDelimited); n += 1
            n += ProtoWire.writeVarint(UInt32(key.count), at: p + n)
            key.withUnsafeBufferPointer { k in
                if let base = k.baseAddress { (p + n).update(from: base, count: k.count) }
            }
            n += key.count
            p[n] = ProtoWire.tag(2, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(counter, at: p + n)
            p[n] = ProtoWire.tag(3, ProtoWire.wireVarint); n += 1
            n += ProtoWire.writeVarint(previousCounter, at: p + n)
            p[n] = ProtoWire.tag(4, ProtoWire.wireLengthDelimited); n += 1
            n += ProtoWire.writeVarint(bodyLength, at: p + n)
            let raw = UnsafeMutableRawBufferPointer(buffer)
            do throws(ProtocolError) {
                let written = try keys.withCipherKey { (cipherKey, iv) throws(ProtocolError) -> Int in
                    do throws(CryptoError) {
                        return try plaintext.withBytes { (pt) throws(CryptoError) -> Int in
                            try AES256CBC.encrypt(
                                pt, key: cipherKey, iv: iv, into: UnsafeMutableRawBufferPointer(rebasing: raw[n..<(n + bodyCount)]))
                        }
                    } catch {
                        throw .crypto(error)
                    }
                }
                guard written == bodyCount else { throw ProtocolError.crypto(.cipherFailure) }
                n += bodyCount
                try Self.mac(
                    over: UnsafeRawBufferPointer(rebasing: raw[0..<n]), senderIdentity: senderIdentity,
                    receiverIdentity: receiverIdentity, keys: keys
                ) { mac in
                    UnsafeMutableRawBufferPointer(rebasing: raw[n..<(n + Limits.macLength)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: mac[0..<Limits.macLength]))
                }
                count = total
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return SignalMessage(
            version: version, senderRatchetKey: senderRatchetKey, counter: counter, previousCounter: previousCounter,
            body: bytes[headerCount..<(headerCount + bodyCount)], serialized: bytes)
    }

    /// True when the trailing 8 bytes are the MAC of the rest under `keys` (constant time).
    func verifyMAC(senderIdentity: IdentityKey, receiverIdentity: IdentityKey, keys: MessageKeys) throws(ProtocolError) -> Bool {
        try serialized.withBytes { (all) throws(ProtocolError) -> Bool in
            let split = all.count - Limits.macLength
            return try Self.mac(
                over: UnsafeRawBufferPointer(rebasing: all[0..<split]), senderIdentity: senderIdentity,
                receiverIdentity: receiverIdentity, keys: keys
            ) { mac in
                ConstantTime.equals(
                    UnsafeRawBufferPointer(rebasing: mac[0..<Limits.macLength]), UnsafeRawBufferPointer(rebasing: all[split...]))
            }
        }
    }

    /// The full 32-byte MAC of `versionAndBody`, lent to `use` (on the stack, wiped afterwards).
    private static func mac<R>(
        over versionAndBody: UnsafeRawBufferPointer, senderIdentity: IdentityKey, receiverIdentity: IdentityKey,
        keys: MessageKeys, _ use: (UnsafeRawBufferPointer) -> R
    ) throws(ProtocolError) -> R {
        try keys.withMacKey { (macKey) throws(ProtocolError) -> R in
            var stream = HMACSHA256(key: macKey).start()
            stream.update(senderIdentity.serialized)
            stream.update(receiverIdentity.serialized)
            stream.update(versionAndBody)
            var full = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            defer { full = (0, 0, 0, 0) }
            return withUnsafeMutableBytes(of: &full) { buf in
                stream.finish(into: buf)
                return use(UnsafeRawBufferPointer(buf))
            }
        }
    }

    /// The protobuf's fields as found (nil when absent). Byte fields are views into the bytes
    /// decoded (fast path) or copies made by swift-protobuf (anything else).
    struct Fields {
        var ratchetKey: ArraySlice<UInt8>?
        var counter: UInt32?
        var previousCounter: UInt32?
        var ciphertext: ArraySlice<UInt8>?

        /// Decodes `bytes[protobuf]`: the fast path when it applies, else swift-protobuf.
        static func decode(_ bytes: [UInt8], protobuf range: Range<Int>) throws(ProtocolError) -> Fields {
            if let fields = fastPath(bytes, protobuf: range) { return fields }
            let proto: Parley_Wire_SignalMessage
            do {
                proto = try Parley_Wire_SignalMessage(serializedBytes: Array(bytes[range]))
            } catch {
                throw .malformed("SignalMessage protobuf")
            }
            return Fields(
                ratchetKey: proto.hasRatchetKey ? ArraySlice(proto.ratchetKey) : nil,
                counter: proto.hasCounter ? proto.counter : nil,
                previousCounter: proto.hasPreviousCounter ? proto.previousCounter : nil,
                ciphertext: proto.hasCiphertext ? ArraySlice(proto.ciphertext) : nil)
        }

        /// The schema's four fields only, one-byte tags, declared wire types (see `ProtoWire`);
        /// nil for anything else.
        static func fastPath(_ bytes: [UInt8], protobuf range: Range<Int>) -> Fields? {
            let found: (key: Range<Int>?, counter: UInt32?, previous: UInt32?, body: Range<Int>?)? = bytes.withUnsafeBytes { all in
                var reader = ProtoWire.Reader(UnsafeRawBufferPointer(rebasing: all[..<range.upperBound]), offset: range.lowerBound)
                var key: Range<Int>? = nil
                var counter: UInt32? = nil
                var previous: UInt32? = nil
                var body: Range<Int>? = nil
                while let tag = reader.byte() {
                    switch tag {
                    case ProtoWire.tag(1, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return nil }
                        key = r
                    case ProtoWire.tag(2, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return nil }
                        counter = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(3, ProtoWire.wireVarint):
                        guard let v = reader.varint() else { return nil }
                        previous = UInt32(truncatingIfNeeded: v)
                    case ProtoWire.tag(4, ProtoWire.wireLengthDelimited):
                        guard let r = reader.lengthDelimited() else { return nil }
                        body = r
                    default:
                        return nil
                    }
                }
                return (key, counter, previous, body)
            }
            guard let found else { return nil }
            return Fields(
                ratchetKey: found.key.map { bytes[$0] }, counter: found.counter, previousCounter: found.previous,
                ciphertext: found.body.map { bytes[$0] })
        }
    }
}
