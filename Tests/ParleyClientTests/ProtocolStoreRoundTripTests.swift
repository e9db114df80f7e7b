import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Every ParleyProtocol store method against `DeviceStore`, in the clear and sealed, each value
/// read back after reopening the file.
@Suite struct ProtocolStoreRoundTripTests {
    @Test(arguments: [false, true])
    func localIdentityAndRegistrationId(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let _: any ProtocolStore = device.store
        #expect(device.store.isSealed == sealed)
        for _ in 0..<2 {
            let pair = try device.store.identityKeyPair()
            #expect(pair.identityKey == device.identity.identityKey)
            #expect(pair.privateKey.rawBytes() == device.identity.privateKey.rawBytes())
            #expect(try device.store.localRegistrationId() == device.registrationId)
            try device.reopen()
        }
    }

    @Test(arguments: [false, true])
    func remoteIdentitiesTrustOnFirstUse(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let clock = SteppingClock()
        let path = dir.file("tofu.sqlite")
        let store = try DeviceStore.create(
            at: path, identity: try IdentityKeyPair.generate(), registrationId: 9,
            passphrase: sealed ? testPassphrase : nil, cost: .interactive, clock: clock.clock)
        let bob = ProtocolAddress(name: "bob", deviceId: 2)
        let first = try IdentityKeyPair.generate().identityKey
        let second = try IdentityKeyPair.generate().identityKey

        #expect(try store.identity(for: bob) == nil)
        #expect(try store.remoteIdentity(for: bob) == nil)
        #expect(try store.isTrustedIdentity(first, for: bob, direction: .sending))
        #expect(try store.saveIdentity(first, for: bob) == false)
        #expect(try store.saveIdentity(first, for: bob) == false)
        #expect(try store.identity(for: bob) == first)
        #expect(try store.isTrustedIdentity(first, for: bob, direction: .receiving))
        #expect(try store.isTrustedIdentity(second, for: bob, direction: .receiving) == false)
        #expect(try store.isTrustedIdentity(second, for: bob, direction: .sending) == false)
        // Another device of the same account is a different address.
        #expect(try store.isTrustedIdentity(second, for: ProtocolAddress(name: "bob", deviceId: 3), direction: .sending))

        let seen = try #require(try store.remoteIdentity(for: bob))
        #expect(seen.verified == false)
        #expect(try store.setVerified(true, for: bob))
        #expect(try store.remoteIdentity(for: bob)?.verified == true)
        #expect(try store.setVerified(true, for: ProtocolAddress(name: "nobody", deviceId: 1)) == false)

        // A key change replaces the key, clears `verified` and restarts `firstSeen`.
        #expect(try store.saveIdentity(second, for: bob) == true)
        let changed = try #require(try store.remoteIdentity(for: bob))
        #expect(changed.identityKey == second)
        #expect(changed.verified == false)
        #expect(changed.firstSeen > seen.firstSeen)
        try store.close()

        let reopened = try DeviceStore.open(at: path, passphrase: sealed ? testPassphrase : nil)
        #expect(try reopened.identity(for: bob) == second)
        #expect(try reopened.remoteIdentity(for: bob) == changed)
    }

    @Test(arguments: [false, true])
    func oneTimePreKeys(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let records = try (1...5).map { PreKeyRecord(id: UInt32($0), keyPair: try PrivateKey.generate(using: SystemRandom.shared)) }
        for record in records { try device.store.storePreKey(record) }
        try device.reopen()
        #expect(try device.store.preKeyIds() == [1, 2, 3, 4, 5])
        for record in records {
            let loaded = try #require(try device.store.loadPreKey(id: record.id))
            #expect(loaded.id == record.id)
            #expect(loaded.keyPair.publicKey == record.keyPair.publicKey)
            #expect(loaded.keyPair.rawBytes() == record.keyPair.rawBytes())
        }
        #expect(try device.store.loadPreKey(id: 99) == nil)
        try device.store.removePreKey(id: 3)
        try device.store.removePreKey(id: 99)
        try device.reopen()
        #expect(try device.store.loadPreKey(id: 3) == nil)
        #expect(try device.store.preKeyIds() == [1, 2, 4, 5])
        // Storing under an existing id replaces the key.
        let replacement = PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        try device.store.storePreKey(replacement)
        #expect(try device.store.loadPreKey(id: 1)?.keyPair.publicKey == replacement.keyPair.publicKey)
    }

    @Test(arguments: [false, true])
    func signedPreKeys(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let old = try SignedPreKeyRecord.generate(id: 1, identity: device.identity, timestamp: 1_600_000_000)
        let current = try SignedPreKeyRecord.generate(id: 2, identity: device.identity, timestamp: 1_700_000_000)
        try device.store.storeSignedPreKey(current)
        try device.store.storeSignedPreKey(old)
        try device.reopen()
        for record in [old, current] {
            let loaded = try #require(try device.store.loadSignedPreKey(id: record.id))
            #expect(loaded.keyPair.rawBytes() == record.keyPair.rawBytes())
            #expect(loaded.keyPair.publicKey == record.keyPair.publicKey)
            #expect(loaded.signature == record.signature)
            #expect(loaded.timestamp == record.timestamp)
            #expect(XEdDSA.verify(loaded.signature, of: loaded.keyPair.publicKey.serialized, by: device.identity.identityKey.publicKey))
        }
        #expect(try device.store.signedPreKeys().map(\.id) == [1, 2])
        #expect(try device.store.loadSignedPreKey(id: 5) == nil)
        try device.store.removeSignedPreKey(id: 1)
        try device.reopen()
        #expect(try device.store.loadSignedPreKey(id: 1) == nil)
        #expect(try device.store.signedPreKeys().map(\.id) == [2])
    }

    @Test(arguments: [false, true])
    func sessionRecords(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let bob = try TestDevice.create(name: "bob", deviceId: 4, in: dir, sealed: false)
        #expect(try alice.store.loadSession(for: bob.address) == nil)
        // A real session: X3DH from Bob's bundle, stored by SessionBuilder through the store.
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        let stored = try #require(try alice.store.loadSession(for: bob.address))
        #expect(stored.hasCurrentSession)
        #expect(stored.remoteIdentity == bob.identity.identityKey)
        #expect(stored.remoteRegistrationId == bob.registrationId)
        // storeSession writes exactly what loadSession reads back.
        let other = ProtocolAddress(name: "carol", deviceId: 1)
        try alice.store.storeSession(stored, for: other)
        try alice.reopen()
        let reloaded = try #require(try alice.store.loadSession(for: other))
        #expect(try reloaded.serialized() == stored.serialized())
        #expect(try alice.store.loadSession(for: bob.address)?.serialized() == stored.serialized())
        #expect(try alice.store.sessionDeviceIds(for: "bob") == [4])
        // An empty record round-trips too, and replaces the previous one.
        try alice.store.storeSession(SessionRecord(), for: other)
        #expect(try alice.store.loadSession(for: other)?.hasCurrentSession == false)
        try alice.store.deleteSession(for: other)
        #expect(try alice.store.loadSession(for: other) == nil)
    }

    @Test(arguments: [false, true])
    func senderKeyRecords(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let name = SenderKeyName(groupId: "group-1", sender: alice.address)
        #expect(try alice.store.loadSenderKey(for: name) == nil)
        // GroupCipher creates and stores the sender key through the store.
        let distribution = try GroupCipher.createDistributionMessage(for: name, store: alice.store)
        try alice.reopen()
        let record = try #require(try alice.store.loadSenderKey(for: name))
        #expect(!record.isEmpty)
        let again = try GroupCipher.createDistributionMessage(for: name, store: alice.store)
        #expect(again.keyId == distribution.keyId)
        #expect(again.chainKey == distribution.chainKey)
        // Same bytes under another (group, sender) key; the original is untouched.
        let copy = SenderKeyName(groupId: "group-2", sender: ProtocolAddress(name: "bob", deviceId: 1))
        try alice.store.storeSenderKey(record, for: copy)
        try alice.reopen()
        #expect(try alice.store.loadSenderKey(for: copy)?.serialized() == record.serialized())
        #expect(try alice.store.loadSenderKey(for: name)?.serialized() == record.serialized())
        try alice.store.deleteSenderKeys(groupId: "group-2")
        #expect(try alice.store.loadSenderKey(for: copy) == nil)
        #expect(try alice.store.loadSenderKey(for: name) != nil)
    }
}
