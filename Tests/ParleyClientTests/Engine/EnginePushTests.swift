import Crypto
import Foundation
import GRDB
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyTestSupport
import Testing

/// Web Push from the client (issue 12): a device registers with a local Web Push service, goes offline, a
/// message arrives, the service gets a content-free push signed with the key the client fetched and checked,
/// and the device comes back and syncs. Through a real relay and a real HTTP push receiver.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct EnginePushTests {
    /// How long a push may take to arrive: the relay's 1 s coalescing window, then one HTTP request, on a
    /// loaded machine.
    static let pushBound: Duration = .seconds(30)

    /// A relay that accepts a loopback `http` push endpoint (`--allow-insecure-push`).
    static func insecurePushHarness() async throws -> EngineHarness {
        var limits = EngineHarness.limits()
        limits.allowInsecurePushEndpoints = true
        return try await EngineHarness(limits: limits)
    }

    /// A subscription as a browser makes one: the endpoint and fresh RFC 8291 keys.
    static func subscription(_ endpoint: String) throws -> WebPushSubscription {
        let key = P256.KeyAgreement.PrivateKey().publicKey.x963Representation
        let auth = Data((0..<16).map { _ in UInt8.random(in: 0...255) })
        return try WebPushSubscription(endpoint: endpoint, p256dh: b64(key), auth: b64(auth))
    }

    static func b64(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func waitFor(_ bound: Duration, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + bound
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return await condition()
    }

    @Test func offlineDeviceGetsAContentFreePushAndSyncsTheMessage() async throws {
        let harness = try await Self.insecurePushHarness()
        let receiver = try await PushReceiver.start()
        let alice = try await harness.register("alice")
        var bob = try await harness.register("bob")
        let bobStore = bob.store.path

        let key = try await bob.relayVAPIDKey()
        let registration = try await bob.registerPush(try Self.subscription(receiver.url("/push/bob")))
        #expect(registration.endpointHost == "127.0.0.1")
        #expect(registration.vapidKey == key)
        #expect(try bob.pushRegistration()?.endpoint == receiver.url("/push/bob"))

        // Bob was online once and went offline (no connection): a message for him is pushed.
        #expect(await bob.syncOnce())
        let secret = "the push must not carry this text"
        try await alice.send(secret, to: bob.account.name)
        #expect(await Self.waitFor(Self.pushBound) { await receiver.log.pushes(to: "/push/bob").count >= 1 })
        let pushes = await receiver.log.pushes(to: "/push/bob")
        let push = try #require(pushes.first)
        // Content-free: no body, no encoding, nothing of the message or its sender anywhere in the request.
        #expect(push.bodyBytes == 0)
        #expect(push.contentEncoding == nil)
        #expect(push.method == "POST")
        for word in [secret, alice.account.name, bob.account.name] {
            #expect(!push.headerText.contains(word), "\(word) in \(push.headerText)")
        }
        #expect(push.path == "/push/bob")
        // VAPID: signed by the key the client fetched and checked, audience the push service's origin, not expired.
        #expect(push.vapidValid)
        #expect(push.publicKey == key.base64URL)
        #expect(push.audience == receiver.origin)
        #expect((push.expiry ?? 0) > Date().timeIntervalSince1970)

        // Bob comes back (a restart of the device) and syncs: the message is there.
        await bob.close()
        bob = try ParleyDevice.open(storePath: bobStore)
        let bobEvents = await EventLog(bob)
        #expect(await bob.syncOnce())
        await bobEvents.wait(for: "the message") { $0.messageBody == secret }

        // The registration survived the restart; unregistering stops pushes.
        #expect(try bob.pushRegistration()?.endpoint == receiver.url("/push/bob"))
        let removed = try await bob.unregisterPush()
        #expect(removed?.endpoint == receiver.url("/push/bob"))
        #expect(try bob.pushRegistration() == nil)
        #expect(try bob.store.pinnedVAPIDKey() == key)
        let before = await receiver.log.pushes(to: "/push/bob").count
        try await alice.send("after unregister", to: bob.account.name)
        #expect(await outboxDrains(alice))
        // A push would come after the 1 s coalescing window: wait several times that, then count.
        try await Task.sleep(for: .seconds(4))
        #expect(await receiver.log.pushes(to: "/push/bob").count == before)
        let bobEventsAgain = await EventLog(bob)
        #expect(await bob.syncOnce())
        await bobEventsAgain.wait(for: "the later message") { $0.messageBody == "after unregister" }

        await alice.close()
        await bob.close()
        try await receiver.stop()
        await harness.finish()
    }

    /// At default settings the relay refuses a loopback endpoint (http, and https to a loopback address) with
    /// a clear reason, and nothing is recorded.
    @Test func defaultRelayRefusesALoopbackEndpoint() async throws {
        let harness = try await EngineHarness()
        let receiver = try await PushReceiver.start()
        let bob = try await harness.register("bob")
        await #expect(throws: PushError.endpointRefused("endpoint must use https")) {
            try await bob.registerPush(try Self.subscription(receiver.url("/push/bob")))
        }
        await #expect(throws: PushError.endpointRefused("endpoint host is not a public address")) {
            try await bob.registerPush(try Self.subscription("https://127.0.0.1:\(receiver.port)/push/bob"))
        }
        #expect(try bob.pushRegistration() == nil)
        let error = PushError.endpointRefused("endpoint host is not a public address")
        #expect(error.description == "the relay refused the push endpoint: endpoint host is not a public address")
        await bob.close()
        try await receiver.stop()
        await harness.finish()
    }

    /// The relay's VAPID key changes (its database lost its key): registering again is refused until the new key
    /// is accepted explicitly; the status says so; afterwards pushes verify against the new key.
    @Test func aChangedRelayKeyIsRefusedUntilAccepted() async throws {
        let harness = try await Self.insecurePushHarness()
        let receiver = try await PushReceiver.start()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let first = try await bob.registerPush(try Self.subscription(receiver.url("/push/bob")))

        try await harness.stopRelay()
        let queue = try DatabaseQueue(path: harness.databasePath)
        try await queue.write { db in try db.execute(sql: "DELETE FROM relay_setting WHERE name = 'vapid_private_key'") }
        try queue.close()
        try await harness.startRelay()

        let status = try await bob.pushStatus()
        #expect(status.keyChanged)
        #expect(status.pinnedKey == first.vapidKey)
        let newKey = try #require(status.relayKey)
        #expect(newKey != first.vapidKey)
        await #expect(throws: PushError.vapidKeyChanged(pinned: first.vapidKey.base64URL, current: newKey.base64URL)) {
            try await bob.relayVAPIDKey()
        }
        await #expect(throws: PushError.vapidKeyChanged(pinned: first.vapidKey.base64URL, current: newKey.base64URL)) {
            try await bob.registerPush(try Self.subscription(receiver.url("/push/bob2")))
        }
        // Refused: the store still records the old registration under the old key.
        #expect(try bob.pushRegistration() == first)

        let second = try await bob.registerPush(try Self.subscription(receiver.url("/push/bob2")), acceptNewRelayKey: true)
        #expect(second.vapidKey == newKey)
        #expect(try bob.store.pinnedVAPIDKey() == newKey)
        #expect(try await bob.pushStatus().keyChanged == false)
        try await alice.send("after the key change", to: bob.account.name)
        #expect(await Self.waitFor(Self.pushBound) { await receiver.log.pushes(to: "/push/bob2").count >= 1 })
        let push = try #require(await receiver.log.pushes(to: "/push/bob2").first)
        #expect(push.vapidValid && push.publicKey == newKey.base64URL)
        await alice.close()
        await bob.close()
        try await receiver.stop()
        await harness.finish()
    }

    /// The relay's key is checked before use: encoding, length, form and curve membership.
    @Test func vapidKeysAreChecked() throws {
        let good = P256.Signing.PrivateKey().publicKey.x963Representation
        let key = try VAPIDPublicKey(base64URL: Self.b64(good))
        #expect(key.rawRepresentation == good)
        #expect(key.base64URL == Self.b64(good))
        // Off the curve: a valid-looking point whose y is changed.
        var offCurve = good
        offCurve[64] ^= 0x01
        #expect(throws: PushError.invalidVAPIDKey("not a point on the P-256 curve")) { try VAPIDPublicKey(base64URL: Self.b64(offCurve)) }
        // Compressed (33 bytes) and wrong prefix.
        let compressed = P256.Signing.PrivateKey().publicKey.compressedRepresentation
        #expect(throws: PushError.self) { try VAPIDPublicKey(base64URL: Self.b64(compressed)) }
        var prefixed = good
        prefixed[0] = 0x05
        #expect(throws: PushError.invalidVAPIDKey("not an uncompressed point (first byte must be 0x04)")) {
            try VAPIDPublicKey(rawRepresentation: prefixed)
        }
        // Padded, standard base64 alphabet, non-canonical trailing bits.
        #expect(throws: PushError.self) { try VAPIDPublicKey(base64URL: good.base64EncodedString()) }
        let text = Self.b64(good)
        let last = text.last == "A" ? "B" : "A"
        #expect(throws: PushError.self) { try VAPIDPublicKey(base64URL: String(text.dropLast()) + last) }
        // All zeros (point at infinity is not 0x04-prefixed; x = y = 0 is not on the curve).
        #expect(throws: PushError.self) { try VAPIDPublicKey(rawRepresentation: Data([0x04] + [UInt8](repeating: 0, count: 64))) }
    }

    /// Subscriptions as browsers export them, and the ways they can be wrong.
    @Test func subscriptionsAreParsedAndChecked() throws {
        let key = Self.b64(P256.KeyAgreement.PrivateKey().publicKey.x963Representation)
        let auth = Self.b64(Data(repeating: 7, count: 16))
        let json = #"{"endpoint":"https://push.example.net/wpush/v2/abc","expirationTime":null,"keys":{"p256dh":"\#(key)","auth":"\#(auth)"}}"#
        let parsed = try WebPushSubscription.parse(json: Data(json.utf8))
        #expect(parsed.endpoint == "https://push.example.net/wpush/v2/abc")
        #expect(parsed.endpointHost == "push.example.net")
        #expect(parsed.auth == Data(repeating: 7, count: 16))
        #expect(try WebPushSubscription(endpoint: "https://push.example.net/x").p256dh == nil)

        func refused(_ text: String) -> Bool {
            do {
                _ = try WebPushSubscription.parse(json: Data(text.utf8))
                return false
            } catch {
                return true
            }
        }
        #expect(refused("[]"))
        #expect(refused("not json"))
        #expect(refused(#"{"keys":{"p256dh":"\#(key)","auth":"\#(auth)"}}"#))
        #expect(refused(#"{"endpoint":"ftp://push.example.net/x"}"#))
        #expect(refused(#"{"endpoint":"https://user:pw@push.example.net/x"}"#))
        #expect(refused(#"{"endpoint":"https:///x"}"#))
        #expect(refused(#"{"endpoint":"https://push.example.net/x","expirationTime":1000}"#))
        #expect(refused(#"{"endpoint":"https://push.example.net/x","keys":{"p256dh":"\#(key)"}}"#))
        #expect(refused(#"{"endpoint":"https://push.example.net/x","keys":{"p256dh":"\#(key)","auth":"AAAA"}}"#))
        #expect(refused(#"{"endpoint":"https://push.example.net/x","keys":{"p256dh":"\#(auth)","auth":"\#(auth)"}}"#))
        #expect(refused(#"{"endpoint":"https://push.example.net/\#(String(repeating: "a", count: 2_100))"}"#))
        #expect(refused(String(repeating: " ", count: WebPushSubscription.maxJSONBytes + 1)))
        #expect(throws: PushError.invalidSubscription("p256dh and auth go together: give both or neither")) {
            try WebPushSubscription(endpoint: "https://push.example.net/x", p256dh: key)
        }
    }

    /// A store made before `client-v8-push` opens, has no registration, and can record one.
    @Test func aStoreFromBeforeTheMigrationHasNoRegistration() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("old.sqlite")
        var store = try DeviceStore.create(
            at: path, identity: try IdentityKeyPair.generate(), registrationId: 7, passphrase: nil, cost: .interactive)
        try store.close()
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(sql: "DROP TABLE push_state")
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'client-v8-push'")
            }
            try queue.close()
        }
        store = try DeviceStore.open(at: path)
        #expect(try store.pushRegistration() == nil)
        #expect(try store.pinnedVAPIDKey() == nil)
        let key = try VAPIDPublicKey(rawRepresentation: P256.Signing.PrivateKey().publicKey.x963Representation)
        try store.savePushRegistration(endpoint: "https://push.example.net/x", key: key, at: 5)
        #expect(try store.pushRegistration() == PushRegistration(endpoint: "https://push.example.net/x", vapidKey: key, registeredAt: 5))
        try store.removePushRegistration()
        #expect(try store.pushRegistration() == nil)
        #expect(try store.pinnedVAPIDKey() == key)
        try store.close()
    }
}
