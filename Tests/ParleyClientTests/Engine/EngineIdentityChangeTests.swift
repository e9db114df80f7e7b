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
}
