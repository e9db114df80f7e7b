import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire
import Testing

/// The relay only ever holds ciphertext: two devices with real Parley keys set up a session
/// through the relay's prekey bundles, exchange known plaintexts through its queues, and the
/// relay's database files (db, -wal, -shm) contain the ciphertexts but none of the plaintexts.
@Suite struct CiphertextOnlyTests {
    struct Device {
        let credentials: DeviceCredentials
        let store: InMemoryProtocolStore
        var address: ProtocolAddress { ProtocolAddress(name: credentials.account, deviceId: credentials.deviceId) }
    }

    static func register(_ prefix: String, registrationId: UInt32, on http: HTTPTestClient) async throws -> Device {
        let identity = try IdentityKeyPair.generate()
        let store = InMemoryProtocolStore(identity: identity, registrationId: registrationId)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: identity, timestamp: 0)
        store.storeSignedPreKey(signed)
        var oneTime: [OneTimePreKey] = []
        for id in UInt32(1)...5 {
            let record = PreKeyRecord(id: id, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
            store.storePreKey(record)
            oneTime.append(OneTimePreKey(keyId: id, publicKey: Data(record.keyPair.publicKey.serialized)))
        }
        let kyber = try KyberPreKeyRecord.generate(id: 1, identity: identity, timestamp: 0, lastResort: true)
        store.storeKyberPreKey(kyber)
        let keys = NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(identity.identityKey.serialized),
            signedPreKey: SignedPreKey(keyId: 1, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: oneTime,
            kyberLastResortPreKey: KyberPreKey(
                keyId: kyber.id, publicKey: Data(kyber.keyPair.publicKey.serialized), signature: Data(kyber.signature)))
        return Device(credentials: try await http.register(Fixtures.uniqueName(prefix), keys: keys), store: store)
    }

    @Test func relayDatabaseHoldsNoPlaintext() async throws {
        // The relay's SQLite files are scanned: this test pins SQLite (PostgreSQL keeps its data elsewhere).
        let relay = try await TestRelay.start(databasePath: TestRelay.sqlitePath())
        let http = relay.http
        let alice = try await Self.register("alice", registrationId: 11, on: http)
        let bob = try await Self.register("bob", registrationId: 22, on: http)

        // Alice fetches Bob's bundle from the relay and runs PQXDH (the bundle carries Bob's Kyber prekey).
        let reply = try await http.call(.GET, "/v1/keys/\(bob.credentials.account)/1", alice.credentials)
        let wire = try #require(try reply.decode(PreKeyBundleResponse.self).devices.first)
        let otk = try #require(wire.oneTimePreKey)
        let bundle = PreKeyBundle(
            registrationId: wire.registrationId, deviceId: wire.deviceId,
            identityKey: try IdentityKey(serialized: Array(wire.identityKey)), signedPreKeyId: wire.signedPreKey.keyId,
            signedPreKey: try PublicKey(serialized: Array(wire.signedPreKey.publicKey)),
            signedPreKeySignature: Array(wire.signedPreKey.signature), preKeyId: otk.keyId,
            preKey: try PublicKey(serialized: Array(otk.publicKey)),
            kyberPreKey: try wire.kyberPreKey.map { key throws(ProtocolError) in
                try PreKeyBundle.KyberPreKey(id: key.keyId, serializedPublicKey: Array(key.publicKey), signature: Array(key.signature))
            })
        try SessionBuilder.process(bundle: bundle, for: bob.address, store: alice.store)

        let plaintexts = (0..<5).map { "attack at dawn, plan \($0): the password is swordfish-\($0)" }
        var ciphertexts: [[UInt8]] = []
        for text in plaintexts {
            let message = try SessionCipher.encrypt(Array(text.utf8), for: bob.address, store: alice.store)
            ciphertexts.append(message.serialized)
            let send = try await http.call(
                .PUT, "/v1/messages/\(bob.credentials.account)", alice.credentials,
                body: SendMessageRequest(messages: [
                    OutgoingDeviceMessage(deviceId: 1, registrationId: 22, type: message.type, content: Data(message.serialized))
                ]))
            #expect(send.status == 200)
        }

        // Bob receives and decrypts everything, but does not acknowledge: it all stays queued.
        let ws = try await relay.connect(bob.credentials)
        let backlog = try await ws.backlog()
        #expect(backlog.count == plaintexts.count)
        for (envelope, text) in zip(backlog, plaintexts) {
            let bytes = Array(envelope.content)
            let plaintext = envelope.type == 3
                ? try SessionCipher.decrypt(try PreKeySignalMessage(serialized: bytes), from: alice.address, store: bob.store)
                : try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: alice.address, store: bob.store)
            #expect(String(decoding: plaintext, as: UTF8.self) == text)
        }
        await ws.close()
        try await relay.stop()

        var files = Data()
        for suffix in ["", "-wal", "-shm"] {
            if let data = FileManager.default.contents(atPath: relay.databasePath + suffix) { files.append(data) }
        }
        // Control: the scan sees what the relay stored (the queued ciphertexts are in the files: their first 200
        // bytes, since a version-4 PreKeySignalMessage of ~1.9 KB continues in SQLite overflow pages)...
        for ciphertext in ciphertexts {
            #expect(files.range(of: Data(ciphertext.prefix(200))) != nil, "ciphertext not found: the scan is blind")
        }
        // ...and no plaintext, nor any long piece of one, is.
        for text in plaintexts {
            #expect(files.range(of: Data(text.utf8)) == nil)
            #expect(files.range(of: Data("swordfish".utf8)) == nil)
        }
    }
}
