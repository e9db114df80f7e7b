import Foundation
import ParleyCrypto
@testable import ParleyProtocol
import SwiftProtobuf
import Testing

/// PQXDH (message version 4), the `requirePostQuantum` policy, Kyber prekeys as last resort and
/// one-time keys, and version-3 sessions living on beside version 4, through the real protocol
/// objects. The byte-exact behaviour is proven by the v4 vectors (ConformanceVectorTests).
@Suite struct PQXDHTests {
    /// A random source that records every draw's purpose and size.
    final class CountingRandom: RandomSource {
        var draws: [(RandomPurpose, Int)] = []
        func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
            draws.append((purpose, count))
            return SystemRandom.shared.draw(count, purpose: purpose)
        }
    }

    @Test func newSessionsAreVersion4WithKyberFields() throws {
        let p = try Pair()
        let first = try p.send("hello", from: aliceAddress)
        guard case .preKey(let message) = first else {
            Issue.record("expected a PreKeySignalMessage")
            return
        }
        #expect(message.serialized.first == 0x44 && message.message.serialized.first == 0x44)
        #expect(message.messageVersion == 4 && message.kyberPreKeyId == 3 && message.kyberCiphertext?.count == 1569)
        #expect(try PreKeySignalMessage(serialized: message.serialized).kyberCiphertext == message.kyberCiphertext)
        // Alice repeats the same Kyber id and ciphertext until she hears from Bob.
        guard case .preKey(let second) = try p.send("again", from: aliceAddress) else {
            Issue.record("expected a second PreKeySignalMessage")
            return
        }
        #expect(second.kyberCiphertext == message.kyberCiphertext && second.baseKey == message.baseKey)
        #expect(try p.receive(first, by: bobAddress) == "hello")
        #expect(try p.receive(.preKey(second), by: bobAddress) == "again")
        let reply = try p.send("hi", from: bobAddress)
        #expect(reply.type == 2 && reply.serialized.first == 0x44)
        #expect(try p.receive(reply, by: aliceAddress) == "hi")
        #expect(try p.send("done", from: aliceAddress).type == 2)
        #expect(p.alice.sessions[bobAddress]?.currentVersion == 4 && p.bob.sessions[aliceAddress]?.currentVersion == 4)
        // The last-resort Kyber prekey stays, its use remembered; the one-time EC prekey is gone.
        #expect(p.bob.kyberPreKeys[3] != nil && p.bob.kyberPreKeyUses.count == 1 && p.bob.preKeys.isEmpty)
    }

    /// Alice draws the base key, the KEM randomness (32 bytes, not a key), then her ratchet key.
    @Test func aliceDrawOrder() throws {
        let bobIdentity = try IdentityKeyPair.generate()
        let bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let bundle = try Pair.publish(bob, identity: bobIdentity, signedId: 1, preKeyId: nil, kyberId: 1)
        let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let random = CountingRandom()
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice, random: random)
        #expect(random.draws.map(\.0) == [.privateKey, .kemEncapsulation, .privateKey])
        #expect(random.draws.map(\.1) == [32, 32, 32])
    }

    @Test func oneTimeKyberPreKeyIsRemovedAfterUse() throws {
        let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let bobIdentity = try IdentityKeyPair.generate()
        let bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let bundle = try Pair.publish(bob, identity: bobIdentity, signedId: 1, preKeyId: 1, kyberId: 8, kyberLastResort: false)
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice)
        let first = try SessionCipher.encrypt(Array("x".utf8), for: bobAddress, store: alice)
        // A corrupted copy first: nothing is consumed.
        var corrupt = first.serialized
        corrupt[corrupt.count - 1] ^= 1
        #expect(throws: ProtocolError.badMAC) { _ = try Pair.decrypt(corrupt, type: 3, from: aliceAddress, store: bob) }
        #expect(bob.kyberPreKeys[8] != nil && bob.preKeys[1] != nil)
        #expect(try Pair.decrypt(first.serialized, type: 3, from: aliceAddress, store: bob) == Array("x".utf8))
        #expect(bob.kyberPreKeys[8] == nil && bob.preKeys[1] == nil && bob.kyberPreKeyUses.isEmpty)
    }

    /// A first message replayed after Bob's session for its base key is gone (more than 40 newer
    /// sessions, or the record deleted) would make the session again with the last-resort Kyber
    /// prekey (no one-time prekey was used): the store remembers (Kyber id, signed prekey id,
    /// base key) and refuses it, changing nothing.
    @Test func replayedFirstMessageAfterTheSessionIsGoneIsRefused() throws {
        let p = try Pair(oneTimePreKey: false)
        let first = try p.send("only once", from: aliceAddress)
        #expect(try p.receive(first, by: bobAddress) == "only once")
        p.bob.storeSession(SessionRecord(), for: aliceAddress)
        let before = try snapshot(p.bob)
        do {
            let again = try p.receive(first, by: bobAddress)
            Issue.record("replayed: \(again)")
        } catch let error as ProtocolError {
            #expect(error == .reusedBaseKey)
        }
        #expect(try snapshot(p.bob) == before)
    }

    // MARK: requirePostQuantum

    @Test func aliceRefusesABundleWithoutKyberAndDrawsNothing() throws {
        let bobIdentity = try IdentityKeyPair.generate()
        let bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let bundle = try Pair.publish(bob, identity: bobIdentity, signedId: 1, preKeyId: 1)
        let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let random = CountingRandom()
        do {
            try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice, random: random)
            Issue.record("a bundle without a Kyber prekey was accepted")
        } catch let error as ProtocolError {
            #expect(error.kind == "x3dh_rejected")
            #expect("\(error)".contains("publishes no Kyber prekey"))
        }
        #expect(random.draws.isEmpty && alice.sessions.isEmpty && alice.identities.isEmpty)
        // Allowed, the same bundle gives a version-3 session.
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice, policy: .allowClassical)
        #expect(alice.sessions[bobAddress]?.currentVersion == 3)
    }

    @Test func bobRefusesAVersion3PreKeyMessageForANewSession() throws {
        let p = try Pair(postQuantum: false)
        let first = try p.send("classical", from: aliceAddress)
        #expect(first.serialized.first == 0x33)
        let before = try snapshot(p.bob)
        do {
            _ = try Pair.decrypt(first.serialized, type: 3, from: aliceAddress, store: p.bob, policy: .requirePostQuantum)
            Issue.record("a new version-3 session was accepted")
        } catch let error as ProtocolError {
            #expect(error.kind == "x3dh_rejected")
        }
        #expect(try snapshot(p.bob) == before)
        #expect(try p.receive(first, by: bobAddress) == "classical")  // allowed
    }

    /// A version-3 session made before the upgrade (policy off) goes on under the new default in
    /// both directions, including Alice's still-pending version-3 PreKeySignalMessages; a new
    /// session between the same devices is then version 4.
    @Test func version3SessionKeepsWorkingUnderTheNewDefault() throws {
        let p = try Pair(postQuantum: false)
        #expect(try p.receive(try p.send("before the upgrade", from: aliceAddress), by: bobAddress) == "before the upgrade")
        // The upgrade: both now decrypt under requirePostQuantum.
        let pending = try p.send("still pending", from: aliceAddress)
        #expect(pending.type == 3 && pending.serialized.first == 0x33)
        #expect(try Pair.decrypt(pending.serialized, type: 3, from: aliceAddress, store: p.bob, policy: .requirePostQuantum)
            == Array("still pending".utf8))
        for i in 0..<4 {
            let fromBob = try p.send("b\(i)", from: bobAddress)
            #expect(fromBob.serialized.first == 0x33)
            #expect(try Pair.decrypt(fromBob.serialized, type: fromBob.type, from: bobAddress, store: p.alice, policy: .requirePostQuantum)
                == Array("b\(i)".utf8))
            let fromAlice = try p.send("a\(i)", from: aliceAddress)
            #expect(fromAlice.type == 2)
            #expect(try Pair.decrypt(fromAlice.serialized, type: 2, from: aliceAddress, store: p.bob, policy: .requirePostQuantum)
                == Array("a\(i)".utf8))
        }
        // Bob publishes a Kyber prekey: Alice's next session with him is version 4, and a late
        // version-3 message still decrypts under the archived version-3 session.
        let late = try p.send("late", from: aliceAddress)
        let bundle = try Pair.publish(p.bob, identity: p.bobIdentity, signedId: 6, preKeyId: 10, kyberId: 4)
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: p.alice)
        let upgraded = try p.send("post-quantum", from: aliceAddress)
        #expect(upgraded.serialized.first == 0x44)
        #expect(try Pair.decrypt(upgraded.serialized, type: 3, from: aliceAddress, store: p.bob) == Array("post-quantum".utf8))
        #expect(p.bob.sessions[aliceAddress]?.currentVersion == 4)
        // The archived version-3 state that decrypts the late message is promoted (§4.8, as libsignal does)...
        #expect(try Pair.decrypt(late.serialized, type: 2, from: aliceAddress, store: p.bob) == Array("late".utf8))
        #expect(p.bob.sessions[aliceAddress]?.currentVersion == 3)
        // ...and Alice's next version-4 message makes the version-4 state current again.
        let next = try p.send("post-quantum again", from: aliceAddress)
        #expect(next.serialized.first == 0x44)
        #expect(try Pair.decrypt(next.serialized, type: next.type, from: aliceAddress, store: p.bob) == Array("post-quantum again".utf8))
        #expect(p.bob.sessions[aliceAddress]?.currentVersion == 4)
    }

    // MARK: Bob's checks

    /// Each refusal is typed and changes nothing; the genuine message decrypts afterwards.
    @Test func kyberRejectsChangeNothing() throws {
        let p = try Pair()
        guard case .preKey(let genuine) = try p.send("genuine", from: aliceAddress),
              let ciphertext = genuine.kyberCiphertext
        else {
            Issue.record("expected a version-4 PreKeySignalMessage")
            return
        }
        func rewrap(kyber: (UInt32, [UInt8])?, signedPreKeyId: UInt32 = 5, preKeyId: UInt32? = 9) throws -> [UInt8] {
            try PreKeySignalMessage(
                registrationId: genuine.registrationId, preKeyId: preKeyId, signedPreKeyId: signedPreKeyId, baseKey: genuine.baseKey,
                identityKey: genuine.identityKey, message: genuine.message, kyber: kyber
            ).serialized
        }
        var typeByte = ciphertext
        typeByte[0] = 0x0A
        var flipped = ciphertext
        flipped[700] ^= 0x10
        let cases: [(String, [UInt8])] = [
            ("unknown_prekey", try rewrap(kyber: (4, ciphertext))),
            ("unknown_prekey", try rewrap(kyber: (3, ciphertext), signedPreKeyId: 6)),
            ("unknown_prekey", try rewrap(kyber: (3, ciphertext), preKeyId: 10)),
            ("invalid_kyber", try rewrap(kyber: (3, typeByte))),
            ("invalid_kyber", try rewrap(kyber: (3, Array(ciphertext.dropLast())))),
            ("invalid_kyber", try rewrap(kyber: nil)),
            ("bad_mac", try rewrap(kyber: (3, flipped))),
        ]
        let before = try snapshot(p.bob)
        for (reason, bytes) in cases {
            do {
                _ = try Pair.decrypt(bytes, type: 3, from: aliceAddress, store: p.bob)
                Issue.record("accepted (expected \(reason))")
            } catch let error as ProtocolError {
                #expect(error.kind == reason, "\(error)")
            }
            #expect(try snapshot(p.bob) == before)
        }
        #expect(try p.receive(.preKey(genuine), by: bobAddress) == "genuine")
    }

    // MARK: records

    @Test func version4RecordsRoundTripAndAreValidated() throws {
        let p = try Pair()
        _ = try p.send("pending", from: aliceAddress)
        let record = try #require(p.alice.sessions[bobAddress])
        let bytes = try record.serialized()
        let restored = try SessionRecord(serialized: bytes)
        #expect(try restored.serialized() == bytes && restored.currentVersion == 4)
        p.alice.storeSession(restored, for: bobAddress)
        let again = try p.send("after restore", from: aliceAddress)
        #expect(try p.receive(again, by: bobAddress) == "after restore")

        var structure = try #require(record.current).structure
        structure.pendingPreKey.kyberCiphertext = Data()
        var proto = Parley_Storage_SessionRecordStructure()
        proto.formatVersion = 1
        proto.current = structure
        #expect(throws: ProtocolError.corruptState("pending Kyber ciphertext")) {
            _ = try SessionRecord(serialized: try proto.serializedBytes())
        }
        proto.current.sessionVersion = 5
        #expect(throws: ProtocolError.corruptState("session version 5")) {
            _ = try SessionRecord(serialized: try proto.serializedBytes())
        }
    }
}

/// Sender Keys in libsignal's current layout (distribution id and chain id) beside the old one.
@Suite struct SenderKeyLayoutTests {
    let name = SenderKeyName(groupId: "g", sender: aliceAddress)
    let distribution = UUID(uuidString: "e3519cca-63e1-4521-95b0-7a1fed8838da")!

    @Test func currentLayoutRoundTrip() throws {
        let sender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiver = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        let skdm = try GroupCipher.createDistributionMessage(for: name, distributionId: distribution, store: sender)
        #expect(skdm.distributionId == distribution && skdm.chainId <= 0x7FFF_FFFF)
        // 0x33 | 0A 10 <uuid> | 10 <chain id> | 18 <iteration> | 22 20 <chain key> | 2A 21 <signing key>
        #expect(Array(skdm.serialized.prefix(3)) == [0x33, 0x0A, 0x10])
        let parsed = try SenderKeyDistributionMessage(serialized: skdm.serialized)
        #expect(parsed.distributionId == distribution && parsed.chainId == skdm.chainId && parsed.chainKey == skdm.chainKey)
        try GroupCipher.process(parsed, for: name, store: receiver)
        for i in 0..<5 {
            let m = try GroupCipher.encrypt(Array("m\(i)".utf8), for: name, store: sender)
            #expect(m.distributionId == distribution && Array(m.serialized.prefix(3)) == [0x33, 0x0A, 0x10])
            let received = try SenderKeyMessage(serialized: m.serialized)
            #expect(received.distributionId == distribution && received.chainId == skdm.chainId && received.iteration == UInt32(i))
            #expect(try GroupCipher.decrypt(received, from: name, store: receiver) == Array("m\(i)".utf8))
        }
        for store in [sender, receiver] {
            let bytes = try #require(store.loadSenderKey(for: name)).serialized()
            let restored = try SenderKeyRecord(serialized: bytes)
            #expect(try restored.serialized() == bytes && restored.states.first?.distributionId == distribution)
        }
    }

    /// One record may hold an old-layout state and a current-layout one with the same chain id:
    /// each message finds only the state of its own layout and distribution.
    @Test func layoutsAndDistributionsDoNotMix() throws {
        let legacySender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let currentSender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiver = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        let legacy = try GroupCipher.createDistributionMessage(for: name, store: legacySender)
        #expect(legacy.distributionId == nil && Array(legacy.serialized.prefix(2)) == [0x33, 0x08])
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: legacy.serialized), for: name, store: receiver)
        let current = try GroupCipher.createDistributionMessage(for: name, distributionId: distribution, store: currentSender)
        try GroupCipher.process(current, for: name, store: receiver)
        #expect(receiver.loadSenderKey(for: name)?.keyIds.count == 2)

        let old = try GroupCipher.encrypt([1], for: name, store: legacySender)
        #expect(old.distributionId == nil)
        #expect(try GroupCipher.decrypt(try SenderKeyMessage(serialized: old.serialized), from: name, store: receiver) == [1])
        let new = try GroupCipher.encrypt([2], for: name, store: currentSender)
        #expect(try GroupCipher.decrypt(try SenderKeyMessage(serialized: new.serialized), from: name, store: receiver) == [2])

        // A message naming another distribution (correctly signed by the member's key) finds no state.
        let signer = try #require(currentSender.loadSenderKey(for: name)?.states.first?.signingPrivate)
        let other = UUID()
        let foreign = try SenderKeyMessage(
            distributionId: other, chainId: current.chainId, iteration: 5, ciphertext: [UInt8](repeating: 0, count: 16),
            signingKey: try XEdDSA.SigningKey(signer), random: SystemRandom.shared)
        let before = try snapshot(receiver)
        #expect(throws: ProtocolError.unknownDistribution(distributionId: other, chainId: current.chainId)) {
            _ = try GroupCipher.decrypt(try SenderKeyMessage(serialized: foreign.serialized), from: name, store: receiver)
        }
        #expect(try snapshot(receiver) == before)
    }

    @Test func malformedCurrentLayoutIsTruncated() throws {
        let sender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        _ = try GroupCipher.createDistributionMessage(for: name, distributionId: distribution, store: sender)
        let m = try GroupCipher.encrypt([1, 2, 3], for: name, store: sender)
        // A 15-byte UUID: 0x33 0A 0F ...
        var short = m.serialized
        short.remove(at: 3)
        short[2] = 0x0F
        #expect(throws: ProtocolError.malformed("distribution UUID is not 16 bytes")) { _ = try SenderKeyMessage(serialized: short) }
        // Version nibble 4 is not a Sender Key version.
        var four = m.serialized
        four[0] = 0x44
        #expect(throws: ProtocolError.unknownVersion(4)) { _ = try SenderKeyMessage(serialized: four) }
    }
}
