import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// Two clients with their own device stores talk through a real relay on loopback: keys
/// published at registration, the sender's first attempt refused with the missing device
/// named, sessions set up from the relay's bundles, the retry accepted, the receiver decrypting
/// from its WebSocket and acknowledging.
@Suite(.timeLimit(.minutes(3)))
struct RelayEndToEndTests {
    struct Client {
        let store: DeviceStore
        let relay: RelayClient
        var account: String { relay.credentials?.account ?? "" }
    }

    static func client(_ prefix: String, registrationId: UInt32, baseURL: String, dir: URL) async throws -> Client {
        let identity = try IdentityKeyPair.generate()
        let store = try DeviceStore.create(
            at: dir.appendingPathComponent("\(prefix).sqlite").path, identity: identity, registrationId: registrationId)
        let keys = try KeyManager().registrationKeys(store: store, now: 0)
        let signed = try #require(keys.signedPreKey)
        let device = NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(identity.identityKey.serialized),
            signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: keys.oneTimePreKeys.map { OneTimePreKey(keyId: $0.id, publicKey: Data($0.keyPair.publicKey.serialized)) },
            kyberLastResortPreKey: keys.kyberLastResortPreKey.map {
                KyberPreKey(keyId: $0.id, publicKey: Data($0.keyPair.publicKey.serialized), signature: Data($0.signature))
            })
        let anonymous = RelayClient(baseURL: baseURL)
        let credentials = try await anonymous.register(name: "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())", device: device)
        return Client(store: store, relay: anonymous.authenticated(as: credentials))
    }

    static func bundle(_ wire: DevicePreKeyBundle) throws -> PreKeyBundle {
        PreKeyBundle(
            registrationId: wire.registrationId, deviceId: wire.deviceId, identityKey: try IdentityKey(serialized: Array(wire.identityKey)),
            signedPreKeyId: wire.signedPreKey.keyId, signedPreKey: try PublicKey(serialized: Array(wire.signedPreKey.publicKey)),
            signedPreKeySignature: Array(wire.signedPreKey.signature), preKeyId: wire.oneTimePreKey?.keyId,
            preKey: try wire.oneTimePreKey.map { try PublicKey(serialized: Array($0.publicKey)) },
            kyberPreKey: try wire.kyberPreKey.map { key throws(ProtocolError) in
                try PreKeyBundle.KyberPreKey(id: key.keyId, serializedPublicKey: Array(key.publicKey), signature: Array(key.signature))
            })
    }

    /// The batched bundle fetch (`POST /v1/keys/bundles`, `RelayClient.bundles(for:)`): the bundles of several
    /// accounts in one request, usable to start sessions, and unknown accounts named.
    @Test func batchedBundlesThroughTheClient() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let running = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: dir.appendingPathComponent("relay.sqlite").path))
        let baseURL = "http://127.0.0.1:\(running.port)"
        let alice = try await Self.client("alice", registrationId: 101, baseURL: baseURL, dir: dir)
        let bob = try await Self.client("bob", registrationId: 202, baseURL: baseURL, dir: dir)
        let carol = try await Self.client("carol", registrationId: 303, baseURL: baseURL, dir: dir)
        let batch = try await alice.relay.bundles(for: [
            BundleRequestTarget(account: bob.account), BundleRequestTarget(account: carol.account, deviceIds: [1]),
            BundleRequestTarget(account: "nobody-here"),
        ])
        #expect(batch.accounts.map(\.account) == [bob.account, carol.account])
        #expect(batch.unknownAccounts == ["nobody-here"])
        let bundles = try batch.accounts.flatMap(\.devices).map(Self.bundle)
        #expect(bundles.map(\.registrationId) == [202, 303])
        #expect(bundles.allSatisfy { $0.preKey != nil })
        try await running.stop()
    }

    @Test func messageThroughTheRelay() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let running = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: dir.appendingPathComponent("relay.sqlite").path))
        let baseURL = "http://127.0.0.1:\(running.port)"
        let alice = try await Self.client("alice", registrationId: 101, baseURL: baseURL, dir: dir)
        let bob = try await Self.client("bob", registrationId: 202, baseURL: baseURL, dir: dir)

        var content = MessageContent()
        var data = DataMessage()
        data.messageID = UUID().uuidString
        data.body = "hello bob, over the relay"
        content.data = data
        let plaintext = try ContentCodec.encode(content)

        // First attempt with no device list: the relay names Bob's device 1 as missing.
        var deviceIds: [UInt32] = []
        var prefetched: [PreKeyBundle] = []  // bundles fetched from the relay before a fan-out
        var response: SendMessageResponse? = nil
        for _ in 0..<3 where response == nil {
            let ciphertexts = try DeviceFanOut().encrypt(plaintext, for: bob.account, deviceIds: deviceIds, store: alice.store) { ids in
                // Runs synchronously inside the store transaction; the bundles were fetched before.
                prefetched.filter { ids.contains($0.deviceId) }
            }
            do {
                response = try await alice.relay.send(
                    to: bob.account,
                    SendMessageRequest(messages: ciphertexts.map {
                        OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: $0.type, content: Data($0.body))
                    }))
            } catch RelayClientError.mismatchedDevices(_, let missing, let extra) {
                #expect(missing == [1] && extra.isEmpty)
                try DeviceFanOut().repair(account: bob.account, extra: extra, stale: [], store: alice.store)
                prefetched = try await alice.relay.bundles(account: bob.account).devices.map(Self.bundle)
                deviceIds = Array(Set(deviceIds + missing)).sorted()
            }
        }
        let accepted = try #require(response)
        #expect(accepted.queued == 1)

        // Bob's device receives it on its WebSocket, decrypts, stores, acknowledges.
        let connection = RelayConnection.connect(webSocketURL: "ws://127.0.0.1:\(running.port)/v1/ws", credentials: try #require(bob.relay.credentials))
        var received: MessageContent? = nil
        for await frame in connection.frames {
            if frame.type == .message, let envelope = frame.envelope {
                let sender = ProtocolAddress(name: envelope.senderAccount, deviceId: envelope.senderDevice)
                #expect(envelope.type == 3)
                let bytes = try SessionCipher.decrypt(try PreKeySignalMessage(serialized: Array(envelope.content)), from: sender, store: bob.store)
                received = try ContentCodec.decode(bytes)
                try connection.ack([envelope.id])
            }
            if frame.type == .queueEmpty { break }
        }
        await connection.close()
        #expect(received?.data.body == "hello bob, over the relay")
        #expect(received?.data.messageID == data.messageID)
        try await running.stop()
    }
}
