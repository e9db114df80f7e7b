import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

@testable import ParleyClient

/// A changed identity on receive (issue 10, defect 3): accepted only once a message under it
/// decrypts, and then together with its session; until then nothing changes.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineIdentityChangeTests {
    /// Alice and Bob with sessions both ways (each has sent and received).
    static func pair(_ harness: EngineHarness) async throws -> (ParleyDevice, ParleyDevice) {
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        try await alice.send("hi bob", to: bob.account.name)
        #expect(await bob.syncOnce())
        try await bob.send("hi alice", to: alice.account.name)
        #expect(await alice.syncOnce())
        // Alice's delivery receipt for "hi alice": received now, so that it does not move Bob's
        // session during the test.
        #expect(await bob.syncOnce())
        return (alice, bob)
    }

    /// A PreKeySignalMessage from Alice's device under `identity` (a reinstall, or an attacker who
    /// can deliver as Alice, e.g. the relay) to Bob's device, set up from a bundle Bob published.
    /// `tamper` breaks the inner message's MAC: it then does not decrypt under any key.
    static func messageUnderNewIdentity(
        _ identity: IdentityKeyPair, from alice: ParleyDevice, to bob: ParleyDevice, harness: EngineHarness, text: String, tamper: Bool
    ) async throws -> OutgoingDeviceMessage {
        let relay = RelayClient(baseURL: harness.baseURL, credentials: alice.account.credentials)
        let wire = try #require(try await relay.bundles(account: bob.account.name, deviceId: bob.account.deviceId).devices.first)
        // Alice's device keeps its registration id (the relay checks it on every send to her).
        let store = InMemoryProtocolStore(identity: identity, registrationId: try alice.store.localRegistrationId())
        try SessionBuilder.process(bundle: try ParleyDevice.bundle(wire), for: bob.account.address, store: store)
        var content = MessageContent()
        content.data.messageID = UUID().uuidString.lowercased()
        content.data.timestamp = UInt64(Date().timeIntervalSince1970 * 1000)
        content.data.body = text
        guard case .preKey(let message) = try SessionCipher.encrypt(try ContentCodec.encode(content), for: bob.account.address, store: store)
        else { throw TestFailure("expected a PreKeySignalMessage") }
        var bytes = message.serialized
        if tamper {
            // The last byte of the inner SignalMessage is the last byte of its MAC.
            let inner = message.message.serialized
            let start = try #require((0...(bytes.count - inner.count)).first { Array(bytes[$0..<($0 + inner.count)]) == inner })
            bytes[start + inner.count - 1] ^= 0x01
        }
        return OutgoingDeviceMessage(deviceId: bob.account.deviceId, registrationId: wire.registrationId, type: 3, content: Data(bytes))
    }

    /// Alice's device publishes `identity` at the relay (what a reinstalled device does), so that
    /// bundles the relay serves for her carry it too.
    static func publish(_ identity: IdentityKeyPair, for alice: ParleyDevice, harness: EngineHarness) async throws {
        let signed = try SignedPreKeyRecord.generate(id: 9_000, identity: identity, timestamp: 0)
        let relay = RelayClient(baseURL: harness.baseURL, credentials: alice.account.credentials)
        _ = try await relay.uploadPreKeys(
            UploadPreKeysRequest(
                identityKey: Data(identity.identityKey.serialized),
                signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature))))
    }

    static func inject(_ message: OutgoingDeviceMessage, as alice: ParleyDevice, to bob: ParleyDevice, harness: EngineHarness) async throws {
        let relay = RelayClient(baseURL: harness.baseURL, credentials: alice.account.credentials)
        _ = try await relay.send(to: bob.account.name, SendMessageRequest(messages: [message], ownDeviceMessages: []))
    }

    @Test func anUnprovenIdentityIsNeitherPinnedNorAllowedToDropTheSession() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceAddress = alice.account.address
        let identityBefore = try bob.store.identity(for: aliceAddress)
        let sessionBefore = try #require(try bob.store.loadSession(for: aliceAddress)?.serialized())
        let bobLog = await EventLog(bob)

        // Garbage under a new identity key, delivered as Alice: nothing is authenticated under that key.
        let forged = try await Self.messageUnderNewIdentity(
            try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: "not alice", tamper: true)
        try await Self.inject(forged, as: alice, to: bob, harness: harness)
        #expect(await bob.syncOnce())

        #expect(try bob.store.identity(for: aliceAddress) == identityBefore, "the unproven key was pinned")
        #expect(try bob.store.loadSession(for: aliceAddress)?.serialized() == sessionBefore, "Bob's session with Alice changed")
        #expect(!bobLog.all.contains { if case .identityChanged = $0 { return true } else { return false } })
        #expect(bobLog.all.contains(.undecryptable(sender: aliceAddress, reason: "untrusted_identity")))

        // The real Alice's next message still decrypts under the session that was there.
        try await alice.send("still me", to: bob.account.name)
        #expect(await bob.syncOnce())
        await bobLog.wait(for: "Alice's next message") { $0.messageBody == "still me" }
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func aProvenIdentityChangeIsAcceptedWithItsSessionForAnUnverifiedContact() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceAddress = alice.account.address
        let bobLog = await EventLog(bob)

        // Alice reinstalled: a real first message under her new key, which the relay publishes too.
        let newIdentity = try IdentityKeyPair.generate()
        let message = try await Self.messageUnderNewIdentity(
            newIdentity, from: alice, to: bob, harness: harness, text: "new phone", tamper: false)
        try await Self.publish(newIdentity, for: alice, harness: harness)
        try await Self.inject(message, as: alice, to: bob, harness: harness)
        #expect(await bob.syncOnce())

        await bobLog.wait(for: "the message under the new key") { $0.messageBody == "new phone" }
        #expect(bobLog.all.contains(.identityChanged(account: aliceAddress.name, accepted: true)))
        #expect(try bob.store.identity(for: aliceAddress) == newIdentity.identityKey)
        #expect(try bob.store.remoteIdentity(for: aliceAddress)?.verified == false)
        #expect(try bob.store.loadSession(for: aliceAddress)?.remoteIdentity == newIdentity.identityKey)
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func aVerifiedContactRefusesEvenAProvenChange() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceAddress = alice.account.address
        try bob.verify(alice.account.name)
        let identityBefore = try bob.store.identity(for: aliceAddress)
        let sessionBefore = try #require(try bob.store.loadSession(for: aliceAddress)?.serialized())
        let bobLog = await EventLog(bob)

        let message = try await Self.messageUnderNewIdentity(
            try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: "trust me", tamper: false)
        try await Self.inject(message, as: alice, to: bob, harness: harness)
        #expect(await bob.syncOnce())

        await bobLog.wait(for: "the refusal") { $0 == .identityChanged(account: aliceAddress.name, accepted: false) }
        #expect(!bobLog.all.contains { $0.messageBody == "trust me" })
        #expect(try bob.store.identity(for: aliceAddress) == identityBefore)
        #expect(try bob.store.loadSession(for: aliceAddress)?.serialized() == sessionBefore)
        #expect(try bob.store.remoteIdentity(for: aliceAddress)?.verified == true)
        await alice.close(); await bob.close()
        await harness.finish()
    }

    // MARK: warnings and the history line (issue 12: a changed safety number went unnoticed on send)

    /// Alice's relay device publishes `identity` with a signed prekey and a last-resort Kyber prekey
    /// under it: the bundle a reinstalled device serves (post-quantum, as the engine requires).
    static func publishBundle(_ identity: IdentityKeyPair, for alice: ParleyDevice, harness: EngineHarness) async throws {
        let signed = try SignedPreKeyRecord.generate(id: 9_001, identity: identity, timestamp: 0)
        let kyber = try KyberPreKeyRecord.generate(id: 9_002, identity: identity, timestamp: 0, lastResort: true)
        let relay = RelayClient(baseURL: harness.baseURL, credentials: alice.account.credentials)
        _ = try await relay.uploadPreKeys(
            UploadPreKeysRequest(
                identityKey: Data(identity.identityKey.serialized),
                signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
                kyberLastResortPreKey: KyberPreKey(keyId: kyber.id, publicKey: Data(kyber.keyPair.publicKey.serialized), signature: Data(kyber.signature))))
    }

    /// Bob's history with `peer`, oldest first.
    static func history(_ bob: ParleyDevice, with peer: String) throws -> [StoredMessage] {
        try bob.store.messages(in: try bob.store.directConversation(with: peer).id, limit: 100).messages.reversed()
    }

    @Test func aChangeSeenOnReceiveIsALineInHistoryAndWarnsUntilTheNumberIsSeen() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceName = alice.account.name
        #expect(try bob.pendingIdentityChange(of: aliceName) == nil)

        let message = try await Self.messageUnderNewIdentity(
            try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: "new phone", tamper: false)
        try await Self.inject(message, as: alice, to: bob, harness: harness)
        #expect(await bob.syncOnce())

        let history = try Self.history(bob, with: aliceName)
        let notices = history.filter(\.notice)
        #expect(notices.map(\.body) == ["your safety number with \(aliceName) changed"])
        // A local event row, not a message from Alice; shown before the message under the new key.
        #expect(notices.first?.sender.name == bob.account.name)
        let noticeIndex = try #require(history.firstIndex { $0.notice })
        let messageIndex = try #require(history.firstIndex { $0.body == "new phone" })
        #expect(noticeIndex < messageIndex)
        let pending = try #require(try bob.pendingIdentityChange(of: aliceName))
        #expect(!pending.refused)

        // The user looks at the new safety number: no more warnings; the line stays in the history.
        try bob.acknowledgeSafetyNumber(with: aliceName)
        #expect(try bob.pendingIdentityChange(of: aliceName) == nil)
        #expect(try Self.history(bob, with: aliceName).filter(\.notice).count == 1)
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func aChangeMetOnSendIsALineInHistoryAndWarns() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceName = alice.account.name
        let newIdentity = try IdentityKeyPair.generate()
        try await Self.publishBundle(newIdentity, for: alice, harness: harness)
        // Bob has no current session with Alice's device any more (as after the relay's 410 for a
        // reinstalled device): the next send sets one up from the bundle, under the new key.
        try bob.store.deleteSession(for: alice.account.address)
        let bobLog = await EventLog(bob)

        try await bob.send("are you there", to: aliceName)
        await bobLog.wait(for: "the change on send") { $0 == .identityChanged(account: aliceName, accepted: true) }
        #expect(try bob.store.identity(for: alice.account.address) == newIdentity.identityKey)
        let history = try Self.history(bob, with: aliceName)
        #expect(history.filter(\.notice).map(\.body) == ["your safety number with \(aliceName) changed"])
        #expect(try bob.pendingIdentityChange(of: aliceName)?.refused == false)

        // The same key met again (another send) is the same change: no second line.
        try bob.store.deleteSession(for: alice.account.address)
        try await bob.send("still there?", to: aliceName)
        #expect(try Self.history(bob, with: aliceName).filter(\.notice).count == 1)
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func aVerifiedContactsRefusedChangeBlocksSendsAndWarnsUntilTrusted() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await Self.pair(harness)
        let aliceName = alice.account.name
        try bob.verify(aliceName)
        let bobLog = await EventLog(bob)

        for text in ["trust me", "really"] {
            let message = try await Self.messageUnderNewIdentity(
                try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: text, tamper: false)
            try await Self.inject(message, as: alice, to: bob, harness: harness)
            #expect(await bob.syncOnce())
        }
        // One line for the refusal, not one per refused message.
        let refusal = DeviceStore.identityChangeSentence(account: aliceName, refused: true)
        #expect(try Self.history(bob, with: aliceName).filter(\.notice).map(\.body) == [refusal])
        #expect(try bob.pendingIdentityChange(of: aliceName)?.refused == true)
        // Seeing the number does not end it: the key stays refused.
        try bob.acknowledgeSafetyNumber(with: aliceName)
        #expect(try bob.pendingIdentityChange(of: aliceName)?.refused == true)

        // Bob's session with Alice is still the old one, but nothing goes to her until he trusts.
        let uid = try await bob.send("over the old session?", to: aliceName)
        let id = try #require(try bob.store.message(uid: uid, sender: bob.account.name))
        #expect(try bob.store.message(id: id)?.statuses[aliceName] == .failed)
        // Two refused messages and the refused send (events reach the log asynchronously).
        let refusals: @Sendable (ClientEvent) -> Bool = { $0 == .identityChanged(account: aliceName, accepted: false) }
        let deadline = ContinuousClock.now + .seconds(30)
        while bobLog.count(refusals) < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(bobLog.count(refusals) >= 3)

        try await bob.trustNewIdentity(of: aliceName)
        #expect(try bob.pendingIdentityChange(of: aliceName) == nil)
        try await bob.send("trusted again", to: aliceName)
        #expect(await alice.syncOnce())
        #expect(try Self.history(alice, with: bob.account.name).contains { $0.body == "trusted again" })
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
