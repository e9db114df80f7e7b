import ParleyCrypto
import ParleyProtocol

/// Structure-aware fuzzing of a live two-party conversation. The input is a program: each byte
/// picks an operation (Alice or Bob sends, a message is delivered intact or reordered, duplicated,
/// bit-flipped, truncated, spliced with another, wrapped in a forged PreKeySignalMessage, given a
/// non-canonical base key, or a party starts a new session from the other's bundle), and the
/// following bytes its arguments. Both parties are real protocol stores; the fuzzer is the network.
///
/// Invariants, checked after every delivery:
/// * a failed decrypt leaves the receiver's sessions, archived states, prekeys and identities as
///   they were;
/// * a successful decrypt returns the plaintext of the genuine message the delivered bytes came
///   from, and no plaintext is delivered twice (replays, including re-derived sessions, fail);
/// * a forged wrapper (fresh base key around a genuine SignalMessage: issue 10's defect 1) and a
///   base key with bit 255 set (defect 2) never decrypt;
/// * a sender never uses the same (ratchet key, counter) twice.
enum RatchetTranscriptTarget {
    static let target = FuzzTarget(
        name: "ratchet-transcript",
        summary: "structure-aware: a live Alice/Bob conversation with a fuzzed network (reorder, duplicate, flip, truncate, splice, forge)",
        body: run)

    /// Operations per input, messages per conversation and decryptions per input: bounds that keep
    /// one input within milliseconds while allowing deep states (several sessions, skipped keys).
    static let maxOperations = 96
    static let maxMessages = 64
    static let maxDecryptions = 128

    enum Operation: UInt8, CaseIterable {
        case aliceSends, bobSends, deliver, deliverFlipped, deliverTruncated, deliverSpliced, deliverForgedWrapper,
            deliverNonCanonicalBaseKey, newSession, deliverAllInOrder
    }

    /// The starting point: Alice has Bob's bundle (one-time prekey 1) processed; nothing was sent.
    struct Genesis {
        let parties: [Party]

        /// Built once; never mutated afterwards (every input copies it).
        nonisolated(unsafe) static let shared: Genesis? = {
            guard let alice = try? Party.make(name: "alice", registrationId: 11, seed: 11, preKeyIds: 100...115),
                let bob = try? Party.make(name: "bob", registrationId: 12, seed: 12, preKeyIds: 1...16),
                let bundle = bob.bundle(preKeyId: 1),
                (try? SessionBuilder.process(bundle: bundle, for: bob.address, store: alice.store, policy: Party.policy, random: alice.random)) != nil
            else { return nil }
            return Genesis(parties: [alice, bob])
        }()
    }

    struct Sent {
        let sender: Int
        let text: String
        let bytes: [UInt8]
        let preKey: Bool
    }

    enum Delivery: Equatable {
        case intact, mutated, forgedWrapper, nonCanonicalBaseKey
    }

    struct Conversation {
        let parties: [Party]
        var wire: [Sent] = []
        var delivered: [Set<String>] = [[], []]
        var messageKeysUsed: Set<[UInt8]> = []
        var decryptions = 0
        var accepted = 0
        var rejected = 0

        init(_ genesis: Genesis) { parties = genesis.parties.map { $0.copy() } }

        mutating func send(from sender: Int) -> FuzzOutcome? {
            guard wire.count < RatchetTranscriptTarget.maxMessages else { return nil }
            let party = parties[sender], peer = parties[1 - sender]
            let text = (sender == 0 ? "A" : "B") + String(wire.count)
            guard let message = try? SessionCipher.encrypt(Array(text.utf8), for: peer.address, store: party.store) else {
                return nil  // no session yet (Bob before Alice's first message reached him)
            }
            let inner: SignalMessage
            switch message {
            case .preKey(let m): inner = m.message
            case .signal(let m): inner = m
            }
            var key = [UInt8(sender)] + inner.senderRatchetKey.serialized
            key += withUnsafeBytes(of: inner.counter.bigEndian) { Array($0) }
            guard messageKeysUsed.insert(key).inserted else { return .violation("\(text): a message key was used twice") }
            wire.append(Sent(sender: sender, text: text, bytes: message.serialized, preKey: message.type == 3))
            return nil
        }

        mutating func deliver(_ origin: Sent, bytes: [UInt8], preKey: Bool, as kind: Delivery) -> FuzzOutcome? {
            guard decryptions < RatchetTranscriptTarget.maxDecryptions else { return nil }
            decryptions += 1
            // Bytes identical to a genuine message are that message, however they were produced.
            var origin = origin, kind = kind
            if kind == .mutated, let same = wire.first(where: { $0.bytes == bytes }) { origin = same; kind = .intact }
            let receiver = parties[1 - origin.sender], sender = parties[origin.sender].address
            let before = receiver.snapshot(peer: sender)
            switch receiver.decrypt(bytes, preKey: preKey, from: sender) {
            case .failure(let error):
                rejected += 1
                guard receiver.snapshot(peer: sender) == before else {
                    return .violation("a failed decrypt (\(error.kind)) of \(origin.text) changed the receiver's state")
                }
                return nil
            case .success(let plaintext):
                accepted += 1
                let text = String(decoding: plaintext, as: UTF8.self)
                switch kind {
                case .forgedWrapper:
                    return .violation("issue 10 defect 1: a forged PreKeySignalMessage wrapper around \(origin.text) decrypted")
                case .nonCanonicalBaseKey:
                    return .violation("issue 10 defect 2: \(origin.text) with a non-canonical base key decrypted")
                case .intact, .mutated: break
                }
                guard text == origin.text else {
                    // A wrapper of one session around the inner message of another decrypted under the
                    // other's state: a PreKeySignalMessage is not bound to the session its base key names.
                    if preKey, let wrapper = try? PreKeySignalMessage(serialized: bytes),
                        let real = wire.first(where: { $0.text == text }), inner(real) == wrapper.message.serialized
                    {
                        return .violation(
                            "issue 10 defect 1: the inner message of \(text) in another session's wrapper (\(origin.text)'s) decrypted")
                    }
                    return .violation("\(origin.text) decrypted to another plaintext")
                }
                guard delivered[1 - origin.sender].insert(text).inserted else { return .violation("\(text) was delivered twice") }
                return nil
            }
        }

        /// The inner SignalMessage of a genuine message.
        func inner(_ sent: Sent) -> [UInt8] {
            if sent.preKey, let m = try? PreKeySignalMessage(serialized: sent.bytes) { return m.message.serialized }
            return sent.bytes
        }
    }

    static func run(_ data: [UInt8]) -> FuzzOutcome {
        guard let genesis = Genesis.shared else { return .violation("the genesis conversation could not be built") }
        var conversation = Conversation(genesis)
        var input = FuzzBytes(data)
        var operations = 0
        while !input.isAtEnd && operations < maxOperations {
            operations += 1
            guard let operation = Operation(rawValue: UInt8(input.choose(Operation.allCases.count))) else { continue }
            if let violation = step(operation, &conversation, &input) { return violation }
        }
        return .accepted("sent=\(conversation.wire.count) decrypted=\(conversation.accepted) rejected=\(conversation.rejected)")
    }

    static func step(_ operation: Operation, _ c: inout Conversation, _ input: inout FuzzBytes) -> FuzzOutcome? {
        func pick() -> Sent? { c.wire.isEmpty ? nil : c.wire[input.choose(c.wire.count)] }
        switch operation {
        case .aliceSends: return c.send(from: 0)
        case .bobSends: return c.send(from: 1)
        case .deliver:
            guard let m = pick() else { return nil }
            return c.deliver(m, bytes: m.bytes, preKey: m.preKey, as: .intact)
        case .deliverFlipped:
            guard let m = pick() else { return nil }
            var bytes = m.bytes
            let bit = input.u16() % (bytes.count * 8)
            bytes[bit / 8] ^= UInt8(1 << (bit % 8))
            return c.deliver(m, bytes: bytes, preKey: m.preKey, as: .mutated)
        case .deliverTruncated:
            guard let m = pick() else { return nil }
            return c.deliver(m, bytes: Array(m.bytes.prefix(input.u16() % m.bytes.count)), preKey: m.preKey, as: .mutated)
        case .deliverSpliced:
            guard let m = pick(), let other = pick() else { return nil }
            let cut = input.u16() % (min(m.bytes.count, other.bytes.count) + 1)
            return c.deliver(m, bytes: Array(m.bytes.prefix(cut) + other.bytes.dropFirst(cut)), preKey: m.preKey, as: .mutated)
        case .deliverForgedWrapper:
            // Around a genuine message's SignalMessage: a fresh base key, the receiver's signed prekey,
            // one of its live one-time prekeys, the sender's real identity and registration id.
            guard let m = pick() else { return nil }
            let receiver = c.parties[1 - m.sender], sender = c.parties[m.sender]
            let live = receiver.store.preKeys.keys.sorted()
            let preKeyId: UInt32? = live.isEmpty ? nil : live[input.choose(live.count)]
            guard let base = try? PrivateKey.generate(using: DeterministicRandom(seed: UInt64(input.u16()) | 0xF0_0000)) else { return nil }
            let forged = ProtoWriter.preKeySignalMessage(
                registrationId: sender.store.localRegistrationId(), preKeyId: preKeyId, signedPreKeyId: Party.signedPreKeyId,
                baseKey: base.publicKey.serialized, identityKey: sender.identityKey.serialized, message: c.inner(m))
            return c.deliver(m, bytes: forged, preKey: true, as: .forgedWrapper)
        case .deliverNonCanonicalBaseKey:
            guard let m = pick(), m.preKey, let flipped = ProtocolFixture.flippingBaseKeyBit255(m.bytes) else { return nil }
            return c.deliver(m, bytes: flipped, preKey: true, as: .nonCanonicalBaseKey)
        case .newSession:
            // A party (re)starts its session from the other's bundle, with one of its live one-time
            // prekeys or without: the old session is archived on both sides once the new one is used.
            let initiator = input.choose(2)
            let peer = c.parties[1 - initiator]
            let live = peer.store.preKeys.keys.sorted()
            let choice = input.choose(live.count + 1)
            guard let bundle = peer.bundle(preKeyId: choice < live.count ? live[choice] : nil) else { return nil }
            let party = c.parties[initiator]
            _ = try? SessionBuilder.process(bundle: bundle, for: peer.address, store: party.store, policy: Party.policy, random: party.random)
            return nil
        case .deliverAllInOrder:
            let sender = input.choose(2)
            for m in c.wire where m.sender == sender && !c.delivered[1 - sender].contains(m.text) {
                if let violation = c.deliver(m, bytes: m.bytes, preKey: m.preKey, as: .intact) { return violation }
            }
            return nil
        }
    }
}
