import Foundation
import ParleyCrypto
@testable import ParleyProtocol
import Testing

/// Issue 10's protocol defects, each through the real protocol objects: forged PreKey wrappers,
/// re-encoded base keys, chain counters at 2^32 - 1, and re-processed distribution messages.
@Suite struct HardeningTests {
    // MARK: forged PreKeySignalMessage wrappers (issue 10, defect 1)

    /// The relay holds back a genuine SignalMessage `m` from Alice's first session; Alice then
    /// starts a second session, so Bob has the first one archived. Wrapping `m` in a
    /// PreKeySignalMessage with a fresh base key, Bob's signed-prekey id, a live one-time prekey
    /// id and Alice's identity must not decrypt under the archived session: nothing may change
    /// (no prekey consumed, no junk state archived), and `m` itself still decrypts afterwards.
    @Test func forgedPreKeyWrapperChangesNothing() throws {
        let p = try Pair()
        try p.handshake()
        let withheld = try p.send("withheld by the relay", from: aliceAddress)
        guard case .signal(let inner) = withheld else {
            Issue.record("expected a SignalMessage after the handshake")
            return
        }
        // Alice starts over from a fresh bundle; Bob's first session becomes archived.
        let bundle = try Pair.publish(p.bob, identity: p.bobIdentity, signedId: 6, preKeyId: 10, kyberId: 4)
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: p.alice)
        try p.receive(try p.send("second session", from: aliceAddress), by: bobAddress)
        #expect(p.bob.sessions[aliceAddress]?.previous.count == 1)

        // A live one-time prekey for the attacker to name.
        let live = PreKeyRecord(id: 77, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        p.bob.storePreKey(live)
        let aliceIdentity = try #require(p.bob.identities[aliceAddress])
        // A Kyber ciphertext of the right type and length for Bob's live Kyber prekey.
        let kyber = try #require(p.bob.kyberPreKeys[4])
        let ciphertext = try kyber.keyPair.publicKey.encapsulate(using: SystemRandom.shared).ciphertext
        let forged = try PreKeySignalMessage(
            registrationId: 11, preKeyId: 77, signedPreKeyId: 6,
            baseKey: try PrivateKey.generate(using: SystemRandom.shared).publicKey,
            identityKey: aliceIdentity, message: inner, kyber: (4, ciphertext.serialized))

        let before = try snapshot(p.bob)
        do {
            let plaintext = try Pair.decrypt(forged.serialized, type: 3, from: aliceAddress, store: p.bob)
            Issue.record("forged wrapper accepted: \(String(decoding: plaintext, as: UTF8.self))")
        } catch let error as ProtocolError {
            #expect(error.kind == "bad_mac")
        }
        #expect(try snapshot(p.bob) == before, "prekeys or session states changed")
        #expect(p.bob.preKeys[77] != nil)

        // The genuine message still decrypts under the archived session.
        #expect(try p.receive(withheld, by: bobAddress) == "withheld by the relay")
    }

    /// The same forgery with no one-time prekey named and Bob's only session current: the inner
    /// message belongs to the current session, yet only the new X3DH state may be tried.
    @Test func forgedWrapperAroundCurrentSessionMessageIsRejected() throws {
        let p = try Pair()
        try p.handshake()
        guard case .signal(let inner) = try p.send("current", from: aliceAddress) else {
            Issue.record("expected a SignalMessage")
            return
        }
        let kyber = try #require(p.bob.kyberPreKeys[3])
        let forged = try PreKeySignalMessage(
            registrationId: 11, preKeyId: nil, signedPreKeyId: 5,
            baseKey: try PrivateKey.generate(using: SystemRandom.shared).publicKey,
            identityKey: try #require(p.bob.identities[aliceAddress]), message: inner,
            kyber: (3, try kyber.keyPair.publicKey.encapsulate(using: SystemRandom.shared).ciphertext.serialized))
        let before = try snapshot(p.bob)
        #expect(throws: ProtocolError.self) { _ = try Pair.decrypt(forged.serialized, type: 3, from: aliceAddress, store: p.bob) }
        #expect(try snapshot(p.bob) == before)
        #expect(try p.receive(.signal(inner), by: bobAddress) == "current")
    }

    // MARK: re-encoded base keys (issue 10, defect 2)

    /// Without a one-time prekey, a first message whose base key has bit 255 flipped gives the
    /// same X3DH secrets (X25519 ignores that bit). It must be refused, before and after the
    /// genuine message was delivered, and change nothing.
    @Test func baseKeyWithBit255SetIsRejected() throws {
        let p = try Pair(oneTimePreKey: false)
        let first = try p.send("only once", from: aliceAddress)
        guard case .preKey(let message) = first else {
            Issue.record("expected a PreKeySignalMessage")
            return
        }
        // 0x44 | 12 21 <0x05 || u(32)> ...: without a pre_key_id, u's last byte is at offset 35.
        var replay = message.serialized
        #expect(Array(replay[1...3]) == [0x12, 0x21, 0x05])
        replay[35] ^= 0x80

        let empty = try snapshot(p.bob)
        do {
            _ = try Pair.decrypt(replay, type: 3, from: aliceAddress, store: p.bob)
            Issue.record("re-encoded base key accepted before the genuine message")
        } catch let error as ProtocolError {
            #expect(error.kind == "invalid_base_key")
        }
        #expect(try snapshot(p.bob) == empty)

        #expect(try p.receive(first, by: bobAddress) == "only once")
        let before = try snapshot(p.bob)
        do {
            let again = try Pair.decrypt(replay, type: 3, from: aliceAddress, store: p.bob)
            Issue.record("replayed: \(String(decoding: again, as: UTF8.self))")
        } catch let error as ProtocolError {
            #expect(error.kind == "invalid_base_key")
        }
        #expect(try snapshot(p.bob) == before, "the replay changed Bob's sessions")
        // The conversation goes on.
        try p.receive(try p.send("reply", from: bobAddress), by: aliceAddress)
    }

    // MARK: chain counters at 2^32 - 1 (issue 10, defect 5)

    @Test func senderKeyChainStopsAtTheLastIteration() throws {
        let name = SenderKeyName(groupId: "g", sender: aliceAddress)
        let sender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiver = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        _ = try GroupCipher.createDistributionMessage(for: name, store: sender)
        // Move the sender's chain to iteration 2^32 - 2 (as if that many messages were sent).
        var record = try #require(sender.loadSenderKey(for: name))
        record.states[0].chainKey = SenderChainKey(key: record.states[0].chainKey.key, iteration: UInt32.max - 1)
        sender.storeSenderKey(record, for: name)
        let skdm = try GroupCipher.createDistributionMessage(for: name, store: sender)
        #expect(skdm.iteration == UInt32.max - 1)
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: skdm.serialized), for: name, store: receiver)

        // The last usable iteration works both ways.
        let last = try GroupCipher.encrypt([1], for: name, store: sender)
        #expect(last.iteration == UInt32.max - 1)
        #expect(try GroupCipher.decrypt(try SenderKeyMessage(serialized: last.serialized), from: name, store: receiver) == [1])

        // The next one would need iteration 2^32: refused, nothing stored, no wrap to 0.
        let senderBefore = try snapshot(sender)
        do {
            let wrapped = try GroupCipher.encrypt([2], for: name, store: sender)
            Issue.record("encrypted at iteration \(wrapped.iteration)")
        } catch let error as ProtocolError {
            #expect(error.kind == "chain_exhausted")
        }
        #expect(try snapshot(sender) == senderBefore)

        // A signed message at iteration 2^32 - 1 is refused by the receiver, which changes nothing.
        let signing = try #require(record.states[0].signingPrivate)
        let forgedLast = try SenderKeyMessage(
            distributionId: nil, chainId: skdm.keyId, iteration: UInt32.max, ciphertext: [UInt8](repeating: 0, count: 16),
            signingKey: try XEdDSA.SigningKey(signing),
            random: SystemRandom.shared)
        let receiverBefore = try snapshot(receiver)
        do {
            _ = try GroupCipher.decrypt(try SenderKeyMessage(serialized: forgedLast.serialized), from: name, store: receiver)
            Issue.record("accepted iteration 2^32 - 1")
        } catch let error as ProtocolError {
            #expect(error.kind == "chain_exhausted")
        }
        #expect(try snapshot(receiver) == receiverBefore)
    }

    @Test func pairwiseChainsStopAtTheLastCounter() throws {
        let p = try Pair()
        try p.handshake()
        // Bob learns Alice's current ratchet key (she stepped it when she received his reply).
        try p.receive(try p.send("after the reply", from: aliceAddress), by: bobAddress)
        // Alice's sending chain and Bob's matching receiving chain, moved to counter 2^32 - 2.
        var aliceRecord = try #require(p.alice.loadSession(for: bobAddress))
        var bobRecord = try #require(p.bob.loadSession(for: aliceAddress))
        let chainKey = try #require(aliceRecord.current?.senderChainKey.key)
        let ratchetKey = try #require(aliceRecord.current?.senderRatchetKey.publicKey)
        let index = try #require(bobRecord.current?.receiverChainIndex(for: ratchetKey))
        aliceRecord.current?.senderChainKey = ChainKey(key: chainKey, index: UInt32.max - 1)
        bobRecord.current?.receiverChains[index].chainKey = ChainKey(key: chainKey, index: UInt32.max - 1)
        p.alice.storeSession(aliceRecord, for: bobAddress)
        p.bob.storeSession(bobRecord, for: aliceAddress)

        #expect(try p.receive(try p.send("last", from: aliceAddress), by: bobAddress) == "last")

        let aliceBefore = try snapshot(p.alice)
        do {
            _ = try p.send("wraps", from: aliceAddress)
            Issue.record("encrypted past counter 2^32 - 1")
        } catch let error as ProtocolError {
            #expect(error.kind == "chain_exhausted")
        }
        #expect(try snapshot(p.alice) == aliceBefore)

        // A message claiming counter 2^32 - 1 on Bob's chain (whose next counter is that) is
        // refused before its MAC matters, and changes nothing.
        let keys = MessageKeys(material: SecretBytes(copying: [UInt8](repeating: 7, count: 80)), counter: UInt32.max)
        let state = try #require(aliceRecord.current)
        let forged = try SignalMessage.encrypt(
            [1, 2, 3], version: state.version, keys: keys, senderRatchetKey: ratchetKey, previousCounter: 0,
            senderIdentity: state.localIdentity, receiverIdentity: state.remoteIdentity)
        let bobBefore = try snapshot(p.bob)
        do {
            _ = try p.receive(.signal(try SignalMessage(serialized: forged.serialized)), by: bobAddress)
            Issue.record("accepted counter 2^32 - 1")
        } catch let error as ProtocolError {
            #expect(error.kind == "chain_exhausted")
        }
        #expect(try snapshot(p.bob) == bobBefore)
    }

    // MARK: re-processed distribution messages (issue 10, defect 6)

    /// Re-processing a known distribution message moves its state to the front without
    /// rewinding it, so the chain in use survives five newer ones.
    @Test func reprocessedDistributionMovesToFront() throws {
        let name = SenderKeyName(groupId: "g", sender: aliceAddress)
        let receiver = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        func newSender() throws -> InMemoryProtocolStore {
            InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        }
        let active = try newSender()
        let activeSKDM = try GroupCipher.createDistributionMessage(for: name, store: active)
        try GroupCipher.process(activeSKDM, for: name, store: receiver)
        let first = try GroupCipher.encrypt(Array("first".utf8), for: name, store: active)
        #expect(try GroupCipher.decrypt(first, from: name, store: receiver) == Array("first".utf8))

        // Four newer sender keys arrive (other generations of the same member).
        for _ in 0..<4 { try GroupCipher.process(try GroupCipher.createDistributionMessage(for: name, store: try newSender()), for: name, store: receiver) }
        #expect(receiver.loadSenderKey(for: name)?.keyIds.last == activeSKDM.keyId)

        // The active one is re-sent: it moves to the front, keeping its position (no rewind).
        try GroupCipher.process(activeSKDM, for: name, store: receiver)
        #expect(receiver.loadSenderKey(for: name)?.keyIds.first == activeSKDM.keyId)
        #expect(receiver.loadSenderKey(for: name)?.keyIds.count == Limits.maxSenderKeyStates)
        #expect(throws: ProtocolError.self) { try GroupCipher.decrypt(first, from: name, store: receiver) }

        // One more newer key evicts the oldest, not the active one.
        try GroupCipher.process(try GroupCipher.createDistributionMessage(for: name, store: try newSender()), for: name, store: receiver)
        let second = try GroupCipher.encrypt(Array("second".utf8), for: name, store: active)
        #expect(try GroupCipher.decrypt(second, from: name, store: receiver) == Array("second".utf8))
    }

    // MARK: copies of secrets (issue 10, defect 7)

    /// Decoding moves every secret out of the decoded protobuf (so that the buffers can be
    /// wiped where they are), and wiping a uniquely held `Data` overwrites it in place.
    @Test func recordDecodingMovesSecretsOut() throws {
        let p = try Pair()
        try p.handshake()
        _ = try p.send("skipped", from: aliceAddress)
        try p.receive(try p.send("after", from: aliceAddress), by: bobAddress)
        let state = try #require(p.bob.sessions[aliceAddress]?.current)
        var structure = state.structure
        #expect(structure.receiverChains.contains { !$0.messageKeys.isEmpty })
        let decoded = try SessionState(structure: &structure)
        #expect(structure.rootKey.isEmpty && !structure.hasSenderChain && structure.receiverChains.isEmpty)
        var again = decoded.structure
        #expect(try SessionState(structure: &again).structure == state.structure)

        var data = Data(repeating: 0x77, count: 32)
        let before = data.withUnsafeBytes { $0.baseAddress }
        data.wipe()
        #expect(data.withUnsafeBytes { $0.baseAddress } == before)
        #expect(data.allSatisfy { $0 == 0 })
    }
}
