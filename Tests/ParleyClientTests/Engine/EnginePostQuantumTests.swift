import Foundation
import GRDB
@testable import ParleyClient
import ParleyCrypto
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// Version 4 (PQXDH) end to end: devices with their own stores through a real relay on loopback.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EnginePostQuantumTests {
    /// A device as a client from before PQXDH registered it: no Kyber prekey at the relay or in its store, and
    /// the policy a store of that time is migrated to (`allowClassical`).
    static func registerClassical(_ prefix: String, harness: EngineHarness) async throws -> ParleyDevice {
        let name = "\(prefix)-\(UUID().uuidString.prefix(6).lowercased())"
        let identity = try IdentityKeyPair.generate()
        let registrationId = UInt32.random(in: 1...16380)
        let store = try DeviceStore.create(
            at: harness.dir.appendingPathComponent("\(name).sqlite").path, identity: identity, registrationId: registrationId)
        try store.setSessionPolicy(.allowClassical)
        let keys = try KeyManager().registrationKeys(store: store, now: ParleyDevice.nowSeconds())
        for key in try store.kyberPreKeys() { try store.removeKyberPreKey(id: key.id) }
        let signed = try #require(keys.signedPreKey)
        let device = NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(identity.identityKey.serialized), signedPreKey: ParleyDevice.wire(signed),
            oneTimePreKeys: keys.oneTimePreKeys.map(ParleyDevice.wire))
        let credentials = try await RelayClient(baseURL: harness.baseURL).register(name: name, device: device)
        try store.saveAccount(
            LocalAccount(name: credentials.account, deviceId: credentials.deviceId, credential: credentials.credential, serverURL: harness.baseURL))
        return try ParleyDevice.attach(store: store)
    }

    /// The first bytes of the direct ciphertexts the relay holds.
    static func storedVersionBytes(_ harness: EngineHarness) throws -> [UInt8] {
        let queue = try DatabaseQueue(path: harness.databasePath)
        return try queue.read { db in
            try Data.fetchAll(db, sql: "SELECT content FROM message WHERE kind = 'direct'").compactMap(\.first)
        }
    }

    static func sessionVersion(_ device: ParleyDevice, with peer: ParleyDevice) throws -> UInt8? {
        try device.store.loadSession(for: ProtocolAddress(name: peer.account.name, deviceId: peer.account.deviceId))?.currentVersion
    }

    @Test func newSessionsAreVersion4OverARealRelay() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        #expect(try alice.sessionPolicy() == .requirePostQuantum)
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)

        // Bob is offline: the relay holds Alice's PreKeySignalMessage, version byte 0x44.
        try await alice.send("hello bob", to: bob.account.name)
        #expect(try Self.storedVersionBytes(harness) == [0x44])
        #expect(try Self.sessionVersion(alice, with: bob) == 4)

        let loops = [Task { await alice.run() }, Task { await bob.run() }]
        await bobLog.wait(for: "bob receives") { $0.messageBody == "hello bob" }
        #expect(try Self.sessionVersion(bob, with: alice) == 4)
        try await bob.send("hi alice", to: alice.account.name)
        await aliceLog.wait(for: "alice receives") { $0.messageBody == "hi alice" }
        try await alice.send("second", to: bob.account.name)
        await bobLog.wait(for: "bob receives the second") { $0.messageBody == "second" }
        #expect(bobLog.count { if case .undecryptable = $0 { return true } else { return false } } == 0)

        // Bob's one-time Kyber prekey was used once and is gone from his store; the relay handed it out once.
        let status = try await bob.relay.preKeyStatus()
        #expect(status.kyberOneTimePreKeyCount == KeyManager().policy.kyberBatchSize - 1)
        #expect(status.hasKyberLastResortPreKey)
        #expect(try bob.store.kyberPreKeys().filter { !$0.isLastResort }.count == KeyManager().policy.kyberBatchSize - 1)

        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func aClassicalOnlyPeerIsRefusedWithAClearError() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let carol = try await Self.registerClassical("carol", harness: harness)

        // Alice (requirePostQuantum, the default) refuses Carol's bundle: no session, nothing sent, the message
        // failed with a reason that says why (the CLI prints it as "could not send to carol-…: …").
        let aliceLog = await EventLog(alice)
        let uid = try await alice.send("hello carol", to: carol.account.name)
        let failure = await aliceLog.wait(for: "the send fails") {
            if case .sendFailed = $0 { return true }
            return false
        }
        if case .sendFailed(let destination, let reason)? = failure {
            #expect(destination.contains(carol.account.name))
            #expect(reason.contains("publishes no Kyber prekey"))
            #expect(reason.contains("post-quantum"))
        }
        let id = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.message(id: id)?.statuses[carol.account.name] == .failed)
        #expect(try Self.sessionVersion(alice, with: carol) == nil)
        #expect(try Self.storedVersionBytes(harness).isEmpty)

        // Carol, a client from before PQXDH, can only make a version-3 session (from Alice's bundle without its
        // Kyber prekey, as an old client reads it); Alice refuses its PreKeySignalMessage.
        let fetched = try await RelayClient(baseURL: harness.baseURL, credentials: carol.account.credentials)
            .bundles(account: alice.account.name, deviceId: alice.account.deviceId)
        let full = try ParleyDevice.bundle(try #require(fetched.devices.first))
        let classical = PreKeyBundle(
            registrationId: full.registrationId, deviceId: full.deviceId, identityKey: full.identityKey,
            signedPreKeyId: full.signedPreKeyId, signedPreKey: full.signedPreKey, signedPreKeySignature: full.signedPreKeySignature,
            preKeyId: full.preKeyId, preKey: full.preKey)
        try SessionBuilder.process(
            bundle: classical, for: ProtocolAddress(name: alice.account.name, deviceId: alice.account.deviceId), store: carol.store,
            policy: .allowClassical)
        try await carol.send("hello alice", to: alice.account.name)
        #expect(try Self.storedVersionBytes(harness) == [0x33])
        let loop = Task { await alice.run() }
        let refused = await aliceLog.wait(for: "alice refuses the v3 message") {
            if case .undecryptable(_, let reason) = $0 { return reason.contains("x3dh_rejected") || reason.contains("classical") }
            return false
        }
        #expect(refused != nil)
        #expect(aliceLog.count { $0.messageBody == "hello alice" } == 0)
        #expect(try Self.sessionVersion(alice, with: carol) == nil)

        loop.cancel()
        await alice.close(); await carol.close()
        await harness.finish()
    }

    /// The CLI says why: `parley send` to a classical-only peer exits 1 with the refusal on stderr.
    @Test func theCLISaysWhyAClassicalPeerIsRefused() async throws {
        let harness = try await EngineHarness()
        let aliceHome = harness.dir.appendingPathComponent("alice-home").path
        let alice = "alice\(UUID().uuidString.prefix(6).lowercased())"
        #expect(try await CLI.run(CLI.binary, home: aliceHome, ["register", alice, "--server", harness.baseURL]).0 == 0)
        let carol = try await Self.registerClassical("carol", harness: harness)
        let (status, output) = try await CLI.run(CLI.binary, home: aliceHome, ["send", carol.account.name, "hello"])
        #expect(status == 1)
        #expect(output.contains("could not send to \(carol.account.name)"))
        #expect(output.contains("refused a classical (X3DH, non-post-quantum) session"))
        #expect(output.contains("publishes no Kyber prekey (post-quantum sessions are required)"))
        await carol.close()
        await harness.finish()
    }

    /// Prekey timestamps are seconds, the unit of `PreKeyPolicy`'s periods: the engine used to stamp them in
    /// milliseconds, so that a signed prekey (and now the last-resort Kyber prekey) rotated every ~3 minutes of key
    /// maintenance and a replaced one was dropped ~43 minutes later.
    @Test func prekeysAreStampedInSeconds() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let now = UInt64(Date().timeIntervalSince1970)
        let signed = try #require(try alice.store.signedPreKeys().last)
        let kyber = try #require(try alice.store.kyberPreKeys().last(where: \.isLastResort))
        for stamp in [signed.timestamp, kyber.timestamp] {
            #expect(stamp + 60 >= now && stamp <= now + 60)
        }
        // Maintenance right after registration rotates nothing and uploads nothing new.
        try await alice.maintainKeys()
        #expect(try alice.store.signedPreKeys().count == 1)
        #expect(try alice.store.kyberPreKeys().filter(\.isLastResort).count == 1)
        await alice.close()
        await harness.finish()
    }

    @Test func aVersion3SessionFromBeforeTheUpgradeKeepsWorking() async throws {
        let harness = try await EngineHarness()
        // Two devices of a release before PQXDH: their session is version 3.
        let alice = try await Self.registerClassical("alice", harness: harness)
        let bob = try await Self.registerClassical("bob", harness: harness)
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)
        var loops = [Task { await alice.run() }, Task { await bob.run() }]
        try await alice.send("before the upgrade", to: bob.account.name)
        await bobLog.wait(for: "bob receives") { $0.messageBody == "before the upgrade" }
        try await bob.send("reply before", to: alice.account.name)
        await aliceLog.wait(for: "alice receives") { $0.messageBody == "reply before" }
        #expect(try Self.sessionVersion(alice, with: bob) == 3)
        for loop in loops { loop.cancel() }

        // The upgrade: the new default policy, and Kyber prekeys published by key maintenance.
        for device in [alice, bob] {
            try device.setSessionPolicy(.requirePostQuantum)
            try await device.maintainKeys()
            let status = try await device.relay.preKeyStatus()
            #expect(status.hasKyberLastResortPreKey)
            #expect(status.kyberOneTimePreKeyCount == KeyManager().policy.kyberBatchSize)
        }

        // The version-3 session goes on, both ways.
        loops = [Task { await alice.run() }, Task { await bob.run() }]
        try await alice.send("after the upgrade", to: bob.account.name)
        await bobLog.wait(for: "bob receives after") { $0.messageBody == "after the upgrade" }
        try await bob.send("reply after", to: alice.account.name)
        await aliceLog.wait(for: "alice receives after") { $0.messageBody == "reply after" }
        #expect(try Self.sessionVersion(alice, with: bob) == 3)
        #expect(try Self.sessionVersion(bob, with: alice) == 3)
        #expect(aliceLog.count { if case .undecryptable = $0 { return true } else { return false } } == 0)
        #expect(bobLog.count { if case .undecryptable = $0 { return true } else { return false } } == 0)

        // A new session (the old one dropped) is version 4 now.
        try alice.store.deleteSession(for: ProtocolAddress(name: bob.account.name, deviceId: bob.account.deviceId))
        try await alice.send("new session", to: bob.account.name)
        await bobLog.wait(for: "bob receives over v4") { $0.messageBody == "new session" }
        #expect(try Self.sessionVersion(alice, with: bob) == 4)
        #expect(try Self.sessionVersion(bob, with: alice) == 4)

        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
