import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// One device of a user with its own store and published keys.
private struct FanOutDevice {
    let account: String
    let deviceId: UInt32
    let store: DeviceStore
    let bundle: PreKeyBundle

    init(_ account: String, _ deviceId: UInt32, registrationId: UInt32, in dir: URL) throws {
        self.account = account
        self.deviceId = deviceId
        let identity = try IdentityKeyPair.generate()
        store = try DeviceStore.create(
            at: dir.appendingPathComponent("\(account)-\(deviceId)-\(registrationId).sqlite").path, identity: identity,
            registrationId: registrationId)
        let keys = try KeyManager().registrationKeys(store: store, now: 0)
        let signed = try #require(keys.signedPreKey)
        let oneTime = try #require(keys.oneTimePreKeys.first)
        let kyber = try #require(keys.kyberOneTimePreKeys.first)
        bundle = PreKeyBundle(
            registrationId: registrationId, deviceId: deviceId, identityKey: identity.identityKey, signedPreKeyId: signed.id,
            signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: oneTime.id,
            preKey: oneTime.keyPair.publicKey,
            kyberPreKey: PreKeyBundle.KyberPreKey(id: kyber.id, publicKey: kyber.keyPair.publicKey, signature: kyber.signature))
    }

    func decrypt(_ c: DeviceCiphertext, from sender: ProtocolAddress) throws -> [UInt8] {
        c.type == 3
            ? try SessionCipher.decrypt(try PreKeySignalMessage(serialized: c.body), from: sender, store: store)
            : try SessionCipher.decrypt(try SignalMessage(serialized: c.body), from: sender, store: store)
    }
}

@Suite struct DeviceFanOutTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-fanout-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    @Test func everyDeviceGetsItsOwnCiphertextAndSessionsAreReused() throws {
        let alice = try FanOutDevice("alice", 1, registrationId: 100, in: dir)
        let bobPhone = try FanOutDevice("bob", 1, registrationId: 201, in: dir)
        let bobLaptop = try FanOutDevice("bob", 2, registrationId: 202, in: dir)
        let bundles = [bobPhone.bundle, bobLaptop.bundle]
        var fetches = 0
        let fanOut = DeviceFanOut()
        let first = try fanOut.encrypt(Array("hi bob".utf8), for: "bob", deviceIds: [1, 2], store: alice.store) { ids in
            fetches += 1
            return bundles.filter { ids.contains($0.deviceId) }
        }
        #expect(first.map(\.deviceId) == [1, 2] && first.map(\.registrationId) == [201, 202] && first.allSatisfy { $0.type == 3 })
        #expect(first[0].body != first[1].body)
        let sender = ProtocolAddress(name: "alice", deviceId: 1)
        #expect(try bobPhone.decrypt(first[0], from: sender) == Array("hi bob".utf8))
        #expect(try bobLaptop.decrypt(first[1], from: sender) == Array("hi bob".utf8))
        _ = try fanOut.encrypt(Array("again".utf8), for: "bob", deviceIds: [1, 2], store: alice.store) { _ in
            fetches += 1
            return []
        }
        #expect(fetches == 1)
    }

    @Test func aMissingBundleChangesNothing() throws {
        let alice = try FanOutDevice("alice", 1, registrationId: 100, in: dir)
        let bob = try FanOutDevice("bob", 1, registrationId: 201, in: dir)
        #expect(throws: FanOutError.noBundle(account: "bob", deviceId: 2)) {
            _ = try DeviceFanOut().encrypt([1], for: "bob", deviceIds: [1, 2], store: alice.store) { _ in [bob.bundle] }
        }
        // The session with device 1 was set up inside the failed transaction: it is gone too.
        #expect(try alice.store.loadSession(for: ProtocolAddress(name: "bob", deviceId: 1)) == nil)
    }

    @Test func repairAfterStaleAndExtraDevices() throws {
        let alice = try FanOutDevice("alice", 1, registrationId: 100, in: dir)
        let bob1 = try FanOutDevice("bob", 1, registrationId: 201, in: dir)
        let bob2 = try FanOutDevice("bob", 2, registrationId: 202, in: dir)
        let fanOut = DeviceFanOut()
        _ = try fanOut.encrypt([1], for: "bob", deviceIds: [1, 2], store: alice.store) { _ in [bob1.bundle, bob2.bundle] }
        // Bob reinstalls device 1 (new registration id, same identity is not required here) and removes device 2.
        let reinstalled = try FanOutDevice("bob", 1, registrationId: 301, in: dir)
        try fanOut.repair(account: "bob", extra: [2], stale: [1], store: alice.store)
        #expect(try alice.store.loadSession(for: ProtocolAddress(name: "bob", deviceId: 2)) == nil)
        // A reinstalled device has a new identity: trust on first use refuses it until the user
        // accepts the change, which is the identity-change warning the client shows.
        #expect(throws: ProtocolError.untrustedIdentity(address: ProtocolAddress(name: "bob", deviceId: 1))) {
            _ = try fanOut.encrypt([2], for: "bob", deviceIds: [1], store: alice.store) { _ in [reinstalled.bundle] }
        }
    }
}
