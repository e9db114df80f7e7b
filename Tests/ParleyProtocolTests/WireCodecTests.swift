import Foundation
import ParleyCrypto
@testable import ParleyProtocol
import SwiftProtobuf
import Testing

/// The hand-written message codec (`ProtoWire`, `SignalMessage`, `PreKeySignalMessage`) against
/// swift-protobuf: the bytes written are the bytes swift-protobuf writes, and every input is
/// accepted or rejected exactly as the swift-protobuf decoder (the reference below, which is the
/// pre-`ProtoWire` parsing code) does, with the same fields or the same error.
@Suite struct WireCodecTests {
    // MARK: reference decoders (swift-protobuf only)

    struct SignalFields: Equatable {
        var version: UInt8, key: [UInt8], counter: UInt32, previous: UInt32, ciphertext: [UInt8]
    }

    static func referenceSignal(_ bytes: [UInt8]) -> Result<SignalFields, ProtocolError> {
        guard bytes.count > Limits.macLength else { return .failure(.malformed("SignalMessage shorter than version and MAC")) }
        do { try VersionByte.check(bytes[0]) } catch { return .failure(error) }
        let proto: Parley_Wire_SignalMessage
        do {
            proto = try Parley_Wire_SignalMessage(serializedBytes: Array(bytes[1..<(bytes.count - Limits.macLength)]))
        } catch {
            return .failure(.malformed("SignalMessage protobuf"))
        }
        guard proto.hasRatchetKey, proto.hasCounter, proto.hasCiphertext else {
            return .failure(.malformed("SignalMessage missing a required field"))
        }
        guard (try? PublicKey(serialized: Array(proto.ratchetKey))) != nil else { return .failure(.invalidKey("ratchet key")) }
        return .success(SignalFields(
            version: bytes[0] >> 4, key: Array(proto.ratchetKey), counter: proto.counter, previous: proto.previousCounter,
            ciphertext: Array(proto.ciphertext)))
    }

    static func actualSignal(_ bytes: [UInt8]) -> Result<SignalFields, ProtocolError> {
        do {
            let m = try SignalMessage(serialized: bytes)
            #expect(m.serialized == bytes)
            return .success(SignalFields(
                version: m.messageVersion, key: m.senderRatchetKey.serialized, counter: m.counter, previous: m.previousCounter,
                ciphertext: m.ciphertext))
        } catch {
            return .failure(error)
        }
    }

    struct PreKeyFields: Equatable {
        var version: UInt8, registrationId: UInt32, preKeyId: UInt32?, signedPreKeyId: UInt32, baseKey: [UInt8]
        var identityKey: [UInt8], message: [UInt8], kyberPreKeyId: UInt32?, kyberCiphertext: [UInt8]?
    }

    static func referencePreKey(_ bytes: [UInt8]) -> Result<PreKeyFields, ProtocolError> {
        guard let first = bytes.first else { return .failure(.malformed("empty PreKeySignalMessage")) }
        do { try VersionByte.check(first) } catch { return .failure(error) }
        let proto: Parley_Wire_PreKeySignalMessage
        do {
            proto = try Parley_Wire_PreKeySignalMessage(serializedBytes: Array(bytes[1...]))
        } catch {
            return .failure(.malformed("PreKeySignalMessage protobuf"))
        }
        guard proto.hasBaseKey, proto.hasIdentityKey, proto.hasMessage, proto.hasSignedPreKeyID else {
            return .failure(.malformed("PreKeySignalMessage missing a required field"))
        }
        guard (try? PublicKey(serialized: Array(proto.baseKey))) != nil else { return .failure(.invalidKey("base key")) }
        guard (try? IdentityKey(serialized: Array(proto.identityKey))) != nil else { return .failure(.invalidKey("identity key")) }
        if case .failure(let e) = referenceSignal(Array(proto.message)) { return .failure(e) }
        // libsignal: Kyber fields together or not at all; not at all only below version 4.
        switch (proto.hasKyberPreKeyID, proto.hasKyberCiphertext) {
        case (true, true): break
        case (false, false):
            if first >> 4 > 3 { return .failure(.invalidKyber("version \(first >> 4) PreKeySignalMessage without a Kyber prekey")) }
        default: return .failure(.invalidKyber("only one of kyber_pre_key_id and kyber_ciphertext is present"))
        }
        return .success(PreKeyFields(
            version: first >> 4, registrationId: proto.registrationID, preKeyId: proto.hasPreKeyID ? proto.preKeyID : nil,
            signedPreKeyId: proto.signedPreKeyID, baseKey: Array(proto.baseKey), identityKey: Array(proto.identityKey),
            message: Array(proto.message), kyberPreKeyId: proto.hasKyberPreKeyID ? proto.kyberPreKeyID : nil,
            kyberCiphertext: proto.hasKyberCiphertext ? Array(proto.kyberCiphertext) : nil))
    }

    static func actualPreKey(_ bytes: [UInt8]) -> Result<PreKeyFields, ProtocolError> {
        do {
            let m = try PreKeySignalMessage(serialized: bytes)
            #expect(m.serialized == bytes)
            return .success(PreKeyFields(
                version: m.messageVersion, registrationId: m.registrationId, preKeyId: m.preKeyId,
                signedPreKeyId: m.signedPreKeyId, baseKey: m.baseKey.serialized, identityKey: m.identityKey.serialized,
                message: m.message.serialized, kyberPreKeyId: m.kyberPreKeyId, kyberCiphertext: m.kyberCiphertext))
        } catch {
            return .failure(error)
        }
    }

    // MARK: input generators

    /// A varint, optionally padded with redundant continuation bytes (up to `length` bytes).
    static func varint(_ value: UInt64, paddedTo length: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        var v = value
        repeat {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        } while v != 0
        while out.count < length { out.append(0x80) }
        out[out.count - 1] &= 0x7F
        return out
    }

    /// A random field: mostly the schema's fields with plausible values, sometimes unknown
    /// fields, wrong wire types, groups, long or non-minimal varints, bad lengths, multi-byte
    /// tags, field number 0 or invalid wire types.
    static func randomField(_ rng: inout SeededGenerator, depth: Int = 0) -> [UInt8] {
        let number: UInt64 = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 0, 7, 8, 15, 16, 100, 1 << 20, (1 << 29) - 1, 1 << 29].randomElement(using: &rng)!
        let wire: UInt64 = Int.random(in: 0..<10, using: &rng) < 7 ? [0, 2].randomElement(using: &rng)! : UInt64.random(in: 0...7, using: &rng)
        let tagPad = Int.random(in: 0..<12, using: &rng) == 0 ? Int.random(in: 1...11, using: &rng) : 0
        var out = varint(number << 3 | wire, paddedTo: tagPad)
        switch wire {
        case 0:
            let value: UInt64 = [0, 1, 127, 128, 300, UInt64(UInt32.max), UInt64(UInt32.max) + 1, UInt64.max,
                                 UInt64.random(in: 0...UInt64.max, using: &rng)].randomElement(using: &rng)!
            let pad = Int.random(in: 0..<6, using: &rng) == 0 ? Int.random(in: 1...11, using: &rng) : 0
            out += varint(value, paddedTo: pad)
        case 1: out += (0..<Int.random(in: 6...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 5: out += (0..<Int.random(in: 2...4, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 2:
            var content: [UInt8]
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: content = [0x05] + (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: content = (0..<Int.random(in: 0..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 2: content = (0..<(16 * Int.random(in: 1...4, using: &rng))).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default: content = []
            }
            var length = UInt64(content.count)
            if Int.random(in: 0..<8, using: &rng) == 0 { length += UInt64.random(in: 1...3, using: &rng) }
            if Int.random(in: 0..<40, using: &rng) == 0 { length = UInt64(0x7FFF_FFFF) + UInt64.random(in: 0...1, using: &rng) }
            let pad = Int.random(in: 0..<8, using: &rng) == 0 ? Int.random(in: 1...7, using: &rng) : 0
            out += varint(length, paddedTo: pad) + content
        case 3:
            if depth < 3 {
                for _ in 0..<Int.random(in: 0...2, using: &rng) { out += randomField(&rng, depth: depth + 1) }
            }
            let endNumber = Int.random(in: 0..<6, using: &rng) == 0 ? number + 1 : number
            if Int.random(in: 0..<8, using: &rng) != 0 { out += varint(endNumber << 3 | 4) }
        default: break
        }
        return out
    }

    static func randomProtobuf(_ rng: inout SeededGenerator) -> [UInt8] {
        (0..<Int.random(in: 0...7, using: &rng)).flatMap { _ in randomField(&rng) }
    }

    /// A message-shaped input: version byte, a protobuf that is either random or a canonical one
    /// with random changes, and 8 bytes of "MAC".
    static func randomSignalInput(_ rng: inout SeededGenerator, genuine: [[UInt8]]) -> [UInt8] {
        var bytes: [UInt8]
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            bytes = [0x33] + randomProtobuf(&rng) + (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 1:
            bytes = genuine.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                case 2: bytes.remove(at: i)
                default: bytes = Array(bytes.prefix(i))
                }
                if bytes.isEmpty { break }
            }
        default:
            // A genuine protobuf with extra fields inserted between its own.
            let g = genuine.randomElement(using: &rng)!
            var proto = Array(g[1..<(g.count - 8)])
            let at = [0, 35, proto.count].randomElement(using: &rng)!
            proto.insert(contentsOf: randomField(&rng), at: min(at, proto.count))
            bytes = [0x33] + proto + g.suffix(8)
        }
        if !bytes.isEmpty && Int.random(in: 0..<20, using: &rng) == 0 { bytes[0] = UInt8.random(in: 0...255, using: &rng) }
        return bytes
    }

    static func genuineSignalMessages() throws -> [[UInt8]] {
        let p = try Pair()
        try p.handshake()
        var out: [[UInt8]] = []
        for size in [0, 1, 15, 16, 200, 2_000] {
            out.append(try p.send(String(repeating: "x", count: size), from: aliceAddress).serialized)
        }
        return out
    }

    // MARK: tests

    @Test func varintWriterMatchesTheDefinition() {
        for value: UInt32 in [0, 1, 127, 128, 255, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455, 268_435_456, UInt32.max] {
            var buffer = [UInt8](repeating: 0, count: 5)
            let n = buffer.withUnsafeMutableBufferPointer { ProtoWire.writeVarint(value, at: $0.baseAddress!) }
            #expect(Array(buffer[0..<n]) == Self.varint(UInt64(value)))
            #expect(ProtoWire.varintSize(value) == n)
        }
    }

    @Test func signalMessageBytesAreSwiftProtobufs() throws {
        let sender = try IdentityKeyPair.generate().identityKey, receiver = try IdentityKeyPair.generate().identityKey
        let ratchet = try PrivateKey.generate(using: SystemRandom.shared).publicKey
        let seed = [UInt8](repeating: 7, count: 32)
        let cases: [(UInt32, UInt8)] = [UInt32(0), 1, 127, 128, 16_384, UInt32.max].flatMap { (c: UInt32) -> [(UInt32, UInt8)] in [(c, 3), (c, 4)] }
        for (counter, version) in cases {
            for previous: UInt32 in [0, 300, UInt32.max] {
                for size in [0, 1, 15, 16, 17, 200, 1_000, 20_000] {
                    let keys = seed.withUnsafeBytes { MessageKeys.derive(seed: $0, counter: counter) }
                    let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
                    let m = try SignalMessage.encrypt(
                        plaintext, version: version, keys: keys, senderRatchetKey: ratchet, previousCounter: previous,
                        senderIdentity: sender, receiverIdentity: receiver)
                    let body = try keys.withCipherKey { (k, iv) throws(ProtocolError) -> [UInt8] in
                        do throws(CryptoError) { return try AES256CBC.encrypt(plaintext, key: k, iv: iv) } catch { throw .crypto(error) }
                    }
                    var proto = Parley_Wire_SignalMessage()
                    proto.ratchetKey = Data(ratchet.serialized)
                    proto.counter = counter
                    proto.previousCounter = previous
                    proto.ciphertext = Data(body)
                    let protoBytes: [UInt8] = try proto.serializedBytes()
                    let versionAndProto: [UInt8] = [(version << 4) | version] + protoBytes
                    let mac = try keys.withMacKey { (k) throws(ProtocolError) -> [UInt8] in
                        HMACSHA256.mac(key: Array(k), data: sender.serialized + receiver.serialized + versionAndProto)
                    }
                    #expect(m.serialized == versionAndProto + mac.prefix(8))
                    #expect(m.ciphertext == body && m.counter == counter && m.previousCounter == previous)
                    #expect(try m.verifyMAC(senderIdentity: sender, receiverIdentity: receiver, keys: keys))
                    #expect(try !m.verifyMAC(senderIdentity: receiver, receiverIdentity: sender, keys: keys))
                    let parsed = try SignalMessage(serialized: m.serialized)
                    #expect(parsed.ciphertext == body && parsed.counter == counter && parsed.previousCounter == previous)
                    #expect(parsed.senderRatchetKey == ratchet && parsed.messageVersion == version)
                }
            }
        }
    }

    @Test func preKeySignalMessageBytesAreSwiftProtobufs() throws {
        let inner = try Self.genuineSignalMessages()
        let base = try PrivateKey.generate(using: SystemRandom.shared).publicKey
        let identity = try IdentityKeyPair.generate().identityKey
        let kyberCiphertext = (0..<1569).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for preKeyId: UInt32? in [nil, 0, 1, 200, UInt32.max] {
            for ids: (UInt32, UInt32) in [(0, 0), (1, 127), (16_384, UInt32.max)] {
                for (m, kyber) in inner.flatMap({ m in [(m, nil), (m, (ids.1 ^ 0x5A5A, kyberCiphertext))] as [([UInt8], (UInt32, [UInt8])?)] }) {
                    let message = try SignalMessage(serialized: m)
                    let built = try PreKeySignalMessage(
                        registrationId: ids.0, preKeyId: preKeyId, signedPreKeyId: ids.1, baseKey: base,
                        identityKey: identity, message: message, kyber: kyber)
                    var proto = Parley_Wire_PreKeySignalMessage()
                    if let kyber {
                        proto.kyberPreKeyID = kyber.0
                        proto.kyberCiphertext = Data(kyber.1)
                    }
                    proto.registrationID = ids.0
                    if let preKeyId { proto.preKeyID = preKeyId }
                    proto.signedPreKeyID = ids.1
                    proto.baseKey = Data(base.serialized)
                    proto.identityKey = Data(identity.serialized)
                    proto.message = Data(m)
                    #expect(built.serialized == [message.messageVersion * 0x11] + (try proto.serializedBytes() as [UInt8]))
                    #expect(Self.actualPreKey(built.serialized) == Self.referencePreKey(built.serialized))
                }
            }
        }
    }

    @Test func signalMessageDecodingMatchesSwiftProtobuf() throws {
        let genuine = try Self.genuineSignalMessages()
        var rng = SeededGenerator(state: 2026)
        var accepted = 0, fast = 0
        for input in genuine + (0..<30_000).map({ _ in Self.randomSignalInput(&rng, genuine: genuine) }) {
            let expected = Self.referenceSignal(input)
            let actual = Self.actualSignal(input)
            #expect(actual == expected, "input \(input.hexString)")
            if case .success = expected { accepted += 1 }
            if input.count > 8, let f = SignalMessage.Fields.fastPath(input, protobuf: 1..<(input.count - 8)) {
                fast += 1
                // Whatever the fast path reads, swift-protobuf reads the same way.
                let proto = try? Parley_Wire_SignalMessage(serializedBytes: Array(input[1..<(input.count - 8)]))
                #expect(proto != nil, "fast path accepted what swift-protobuf rejects: \(input.hexString)")
                if let proto {
                    #expect(f.ratchetKey.map(Array.init) == (proto.hasRatchetKey ? Array(proto.ratchetKey) : nil))
                    #expect(f.counter == (proto.hasCounter ? proto.counter : nil))
                    #expect(f.previousCounter == (proto.hasPreviousCounter ? proto.previousCounter : nil))
                    #expect(f.ciphertext.map(Array.init) == (proto.hasCiphertext ? Array(proto.ciphertext) : nil))
                }
            }
        }
        // The generator reaches both paths and both outcomes.
        #expect(accepted > 1_000 && fast > 1_000 && fast < 29_000)
    }

    @Test func preKeyMessageDecodingMatchesSwiftProtobuf() throws {
        let p = try Pair()
        let first = try p.send("hello", from: aliceAddress).serialized
        let genuineInner = try Self.genuineSignalMessages()
        var rng = SeededGenerator(state: 77)
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes: [UInt8]
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                bytes = first
                for _ in 0..<Int.random(in: 1...2, using: &rng) where !bytes.isEmpty {
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: bytes[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                    case 1: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                    case 2: bytes.remove(at: i)
                    default: bytes = Array(bytes.prefix(i))
                    }
                }
            case 1:
                // Fields in random order and number, genuine or random contents.
                var fields: [[UInt8]] = []
                let key = [0x05] + (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let inner = Int.random(in: 0..<3, using: &rng) == 0
                    ? Self.randomSignalInput(&rng, genuine: genuineInner) : genuineInner.randomElement(using: &rng)!
                fields.append([0x12] + Self.varint(UInt64(key.count)) + key)
                fields.append([0x1A] + Self.varint(UInt64(key.count)) + key)
                fields.append([0x22] + Self.varint(UInt64(inner.count)) + inner)
                fields.append([0x30] + Self.varint(UInt64.random(in: 0...UInt64(UInt32.max) + 5, using: &rng)))
                if Bool.random(using: &rng) { fields.append([0x08] + Self.varint(UInt64.random(in: 0...1_000, using: &rng))) }
                if Bool.random(using: &rng) { fields.append([0x28] + Self.varint(UInt64.random(in: 0...1_000, using: &rng))) }
                if Int.random(in: 0..<3, using: &rng) > 0 { fields.append([0x38] + Self.varint(UInt64.random(in: 0...UInt64(UInt32.max) + 5, using: &rng))) }
                if Int.random(in: 0..<3, using: &rng) > 0 {
                    let ciphertext = (0..<[0, 1, 1568, 1569, 1570].randomElement(using: &rng)!).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    fields.append([0x42] + Self.varint(UInt64(ciphertext.count)) + ciphertext)
                }
                for _ in 0..<Int.random(in: 0...2, using: &rng) { fields.append(Self.randomField(&rng)) }
                fields.shuffle(using: &rng)
                fields.removeLast(Int.random(in: 0..<8, using: &rng) == 0 ? 1 : 0)
                bytes = [[0x33, 0x44, 0x34, 0x43].randomElement(using: &rng)!] + fields.flatMap { $0 }
            default:
                bytes = [[0x33, 0x44].randomElement(using: &rng)!] + Self.randomProtobuf(&rng)
            }
            let expected = Self.referencePreKey(bytes)
            #expect(Self.actualPreKey(bytes) == expected, "input \(bytes.hexString)")
            if case .success = expected { accepted += 1 }
        }
        #expect(accepted > 1_000)
    }
}
