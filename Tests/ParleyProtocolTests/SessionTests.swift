import ParleyConformance
import ParleyCrypto
@testable import ParleyProtocol
import Testing

@Suite struct SessionTests {
    @Test(arguments: [true, false])
    func roundTripAndPreKeyPhase(oneTimePreKey: Bool) throws {
        let p = try Pair(oneTimePreKey: oneTimePreKey)
        let first = try p.send("one", from: aliceAddress)
        let second = try p.send("two", from: aliceAddress)
        #expect(first.type == 3 && second.type == 3)
        #expect(try p.receive(second, by: bobAddress) == "two")
        // The one-time prekey is gone once used, yet the earlier message from the same base key decrypts.
        #expect(p.bob.preKeys.isEmpty)
        #expect(try p.receive(first, by: bobAddress) == "one")
        let reply = try p.send("three", from: bobAddress)
        #expect(reply.type == 2)
        #expect(try p.receive(reply, by: aliceAddress) == "three")
        #expect(try p.send("four", from: aliceAddress).type == 2)
    }

    /// Random senders and bounded reordering: every message arrives within 4 sends of its own
    /// (later ones would come from receiving chains that are no longer kept, by design).
    @Test func randomConversationWithReordering() throws {
        var rng = SeededGenerator(state: 42)
        let p = try Pair()
        try p.handshake()
        var inFlight: [(sent: Int, message: CiphertextMessage, text: String, to: ProtocolAddress)] = []
        for i in 0..<600 {
            let from = Bool.random(using: &rng) ? aliceAddress : bobAddress
            let to = from == aliceAddress ? bobAddress : aliceAddress
            inFlight.append((i, try p.send("m\(i)", from: from), "m\(i)", to))
            while let j = inFlight.firstIndex(where: { i - $0.sent >= 4 })
                ?? (Bool.random(using: &rng) && !inFlight.isEmpty ? Int.random(in: 0..<inFlight.count, using: &rng) : nil) {
                let m = inFlight.remove(at: j)
                #expect(try p.receive(m.message, by: m.to) == m.text)
            }
        }
        for m in inFlight.shuffled(using: &rng) { #expect(try p.receive(m.message, by: m.to) == m.text) }
    }

    @Test func duplicateIsRejectedWithoutStateChange() throws {
        let p = try Pair()
        try p.handshake()
        let m = try p.send("once", from: aliceAddress)
        try p.receive(m, by: bobAddress)
        let before = try snapshot(p.bob)
        #expect(throws: ProtocolError.duplicateMessage(expected: 1, counter: 0)) { try p.receive(m, by: bobAddress) }
        #expect(try snapshot(p.bob) == before)
    }

    /// Any corruption of a message in flight fails with a typed error, leaves every store as it
    /// was, and the genuine message still decrypts afterwards.
    @Test func corruptedMessagesChangeNothing() throws {
        var rng = SeededGenerator(state: 7)
        let p = try Pair()
        try p.handshake()
        for round in 0..<150 {
            let genuine = try p.send("payload \(round)", from: round % 3 == 0 ? bobAddress : aliceAddress)
            let receiver = round % 3 == 0 ? aliceAddress : bobAddress
            let store = receiver == aliceAddress ? p.alice : p.bob
            let from = receiver == aliceAddress ? bobAddress : aliceAddress
            var bytes = genuine.serialized
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1:
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            default:
                bytes.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...bytes.count, using: &rng))
            }
            let before = try snapshot(store)
            #expect(throws: ProtocolError.self) { _ = try Pair.decrypt(bytes, type: genuine.type, from: from, store: store) }
            #expect(try snapshot(store) == before, "round \(round) changed state")
            #expect(try p.receive(genuine, by: receiver) == "payload \(round)")
        }
    }

    @Test func forwardJumpLimit() throws {
        let p = try Pair()
        try p.handshake()
        // 25,000 skipped messages are accepted; only the newest 2,000 keys are kept.
        for _ in 0..<Limits.maxForwardJumps { _ = try p.send("x", from: aliceAddress) }
        let far = try p.send("far", from: aliceAddress)
        #expect(try p.receive(far, by: bobAddress) == "far")
        let chain = try #require(p.bob.sessions[aliceAddress]?.current?.receiverChains.last)
        #expect(chain.skippedKeys.count == Limits.maxMessageKeys)
        #expect(chain.skippedKeys.first?.counter == Limits.maxForwardJumps - UInt32(Limits.maxMessageKeys))

        // One more than the limit is refused.
        for _ in 0...Limits.maxForwardJumps { _ = try p.send("x", from: aliceAddress) }
        let tooFar = try p.send("too far", from: aliceAddress)
        let before = try snapshot(p.bob)
        #expect(throws: ProtocolError.self) { try p.receive(tooFar, by: bobAddress) }
        do { try p.receive(tooFar, by: bobAddress) } catch let e as ProtocolError { #expect(e.kind == "too_far_ahead") }
        #expect(try snapshot(p.bob) == before)
    }

    @Test func skippedKeysOldestDroppedFirst() throws {
        let p = try Pair()
        try p.handshake()
        let messages = try (0..<(Limits.maxMessageKeys + 10)).map { try p.send("m\($0)", from: aliceAddress) }
        let last = try p.send("last", from: aliceAddress)
        try p.receive(last, by: bobAddress)
        // The 10 oldest skipped keys were dropped: those messages now count as duplicates.
        for m in messages.prefix(10) {
            do { try p.receive(m, by: bobAddress); Issue.record("accepted a dropped key") } catch let e as ProtocolError {
                #expect(e.kind == "duplicate")
            }
        }
        #expect(try p.receive(messages[10], by: bobAddress) == "m10")
        #expect(try p.receive(messages[Limits.maxMessageKeys + 9], by: bobAddress) == "m\(Limits.maxMessageKeys + 9)")
    }

    @Test func receiverChainsAreCapped() throws {
        let p = try Pair()
        try p.handshake()
        var old: [CiphertextMessage] = []
        for i in 0..<8 {
            old.append(try p.send("held \(i)", from: aliceAddress))
            _ = try p.receive(try p.send("a\(i)", from: aliceAddress), by: bobAddress)
            _ = try p.receive(try p.send("b\(i)", from: bobAddress), by: aliceAddress)
        }
        let chains = try #require(p.bob.sessions[aliceAddress]?.current?.receiverChains)
        #expect(chains.count == Limits.maxReceiverChains)
        // The newest held messages' chains are still kept; the oldest are not (bad MAC).
        #expect(try p.receive(old[7], by: bobAddress) == "held 7")
        do { try p.receive(old[0], by: bobAddress); Issue.record("old chain accepted") } catch let e as ProtocolError {
            #expect(e.kind == "bad_mac")
        }
    }

    @Test func untrustedIdentityOnNewBundleAndMessage() throws {
        let p = try Pair()
        try p.handshake()
        // Bob reinstalls with a new identity: Alice refuses the bundle and stores nothing.
        let newIdentity = try IdentityKeyPair.generate()
        let newBob = InMemoryProtocolStore(identity: newIdentity, registrationId: 23)
        let bundle = try Pair.publish(newBob, identity: newIdentity, signedId: 1, preKeyId: 1, kyberId: 1)
        let before = try snapshot(p.alice)
        #expect(throws: ProtocolError.untrustedIdentity(address: bobAddress)) {
            try SessionBuilder.process(bundle: bundle, for: bobAddress, store: p.alice)
        }
        #expect(try snapshot(p.alice) == before)
    }

    @Test func badSignedPreKeySignature() throws {
        let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let bobIdentity = try IdentityKeyPair.generate()
        let bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let good = try Pair.publish(bob, identity: bobIdentity, signedId: 1, preKeyId: nil, kyberId: 1)
        var signature = good.signedPreKeySignature
        signature[5] ^= 1
        let bad = PreKeyBundle(
            registrationId: 2, deviceId: 1, identityKey: good.identityKey, signedPreKeyId: 1, signedPreKey: good.signedPreKey,
            signedPreKeySignature: signature, preKeyId: nil, preKey: nil, kyberPreKey: good.kyberPreKey)
        #expect(throws: ProtocolError.badSignature) { try SessionBuilder.process(bundle: bad, for: bobAddress, store: alice) }
        #expect(alice.sessions.isEmpty && alice.identities.isEmpty)
    }

    @Test func missingPreKeysAreTypedAndHarmless() throws {
        let p = try Pair()
        let m = try p.send("hi", from: aliceAddress)
        p.bob.removePreKey(id: 9)
        let before = try snapshot(p.bob)
        #expect(throws: ProtocolError.missingPreKey(9)) { try p.receive(m, by: bobAddress) }
        #expect(try snapshot(p.bob) == before)
    }

    @Test func noSession() throws {
        let store = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        #expect(throws: ProtocolError.noSession(bobAddress)) { try SessionCipher.encrypt([1], for: bobAddress, store: store) }
    }

    @Test func archivedSessionsStillDecryptAndAreCapped() throws {
        let p = try Pair()
        try p.handshake()
        let late = try p.send("from the first session", from: aliceAddress)
        // Alice starts over from a fresh bundle: a new session, the old one archived on both sides.
        let bundle = try Pair.publish(p.bob, identity: p.bobIdentity, signedId: 6, preKeyId: 10, kyberId: 4)
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: p.alice)
        try p.receive(try p.send("second session", from: aliceAddress), by: bobAddress)
        #expect(try p.receive(late, by: bobAddress) == "from the first session")

        var record = SessionRecord()
        let state = try #require(p.bob.sessions[aliceAddress]?.current)
        for _ in 0..<(Limits.maxArchivedStates + 5) { record.promote(state) }
        #expect(record.previous.count == Limits.maxArchivedStates)
    }

    @Test func recordsSerializeAndRejectCorruption() throws {
        let p = try Pair()
        try p.handshake()
        _ = try p.send("skipped", from: aliceAddress)
        try p.receive(try p.send("after", from: aliceAddress), by: bobAddress)
        let record = try #require(p.bob.sessions[aliceAddress])
        let bytes = try record.serialized()
        let restored = try SessionRecord(serialized: bytes)
        #expect(try restored.serialized() == bytes)
        p.bob.storeSession(restored, for: aliceAddress)
        try p.receive(try p.send("still works", from: aliceAddress), by: bobAddress)

        #expect(throws: ProtocolError.self) { try SessionRecord(serialized: [0xFF, 0x01, 0x02]) }
        var rng = SeededGenerator(state: 3)
        for _ in 0..<200 {
            var corrupt = bytes
            corrupt[Int.random(in: 0..<corrupt.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            _ = try? SessionRecord(serialized: corrupt)  // must not crash; either a typed error or a record
        }
    }
}

@Suite struct SafetyNumberTests {
    @Test func independentVectors() {
        let path = repositoryRoot.appendingPathComponent("TestVectors/fingerprint").path
        let outcomes = ParleyConformance.ConformanceRunner().run(paths: [path])
        #expect(outcomes.count == 2)
        for o in outcomes { #expect(o.passed, "\(o.line)") }
    }

    @Test func aManInTheMiddleChangesTheNumber() throws {
        let a = try IdentityKeyPair.generate().identityKey, b = try IdentityKeyPair.generate().identityKey
        let m = try IdentityKeyPair.generate().identityKey
        let aliceView = try SafetyNumber(localId: Array("alice".utf8), localKey: a, remoteId: Array("bob".utf8), remoteKey: m, iterations: 1024)
        let bobView = try SafetyNumber(localId: Array("bob".utf8), localKey: b, remoteId: Array("alice".utf8), remoteKey: a, iterations: 1024)
        #expect(aliceView.displayString.count == 60)
        #expect(aliceView.displayString != bobView.displayString)
        #expect(try !aliceView.matches(scanned: bobView.scannable))
        #expect(throws: ProtocolError.self) { try aliceView.matches(scanned: [0x08]) }
        #expect(throws: ProtocolError.self) { _ = try SafetyNumber(localId: [], localKey: a, remoteId: [], remoteKey: b, iterations: 1) }
    }
}
