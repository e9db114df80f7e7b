import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

@Suite struct KeyManagerTests {
    func makeStore() throws -> (DeviceStore, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try DeviceStore.create(
            at: dir.appendingPathComponent("device.sqlite").path, identity: try IdentityKeyPair.generate(), registrationId: 7)
        return (store, dir)
    }

    @Test func registrationPublishesASignedKeyAndABatch() throws {
        let (store, dir) = try makeStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = try KeyManager().registrationKeys(store: store, now: 1_000)
        let signed = try #require(keys.signedPreKey)
        #expect(keys.oneTimePreKeys.count == 100)
        #expect(Set(keys.oneTimePreKeys.map(\.id)).count == 100)
        #expect(try store.preKeyIds().count == 100)
        #expect(XEdDSA.verify(signed.signature, of: signed.keyPair.publicKey.serialized, by: try store.identityKeyPair().identityKey.publicKey))
        #expect(try store.loadSignedPreKey(id: signed.id)?.keyPair.publicKey == signed.keyPair.publicKey)
    }

    @Test func refillsNeverReuseIds() throws {
        let (store, dir) = try makeStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let manager = KeyManager()
        let first = try manager.registrationKeys(store: store, now: 0).oneTimePreKeys
        for record in first { try store.removePreKey(id: record.id) }  // all consumed
        let second = try manager.refill(store: store)
        #expect(Set(first.map(\.id)).isDisjoint(with: second.map(\.id)))
        #expect(manager.needsRefill(remaining: 9) && !manager.needsRefill(remaining: 10))
    }

    @Test func signedPreKeyRotationKeepsThePreviousForTheGracePeriod() throws {
        let (store, dir) = try makeStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let manager = KeyManager()
        let day: UInt64 = 24 * 3600
        let original = try #require(try manager.registrationKeys(store: store, now: 0).signedPreKey)
        #expect(try manager.rotateSignedPreKeyIfDue(store: store, now: day) == nil)
        let second = try #require(try manager.rotateSignedPreKeyIfDue(store: store, now: 2 * day))
        #expect(second.id != original.id)
        let third = try #require(try manager.rotateSignedPreKeyIfDue(store: store, now: 4 * day))
        // The original was replaced on day 2: kept until day 32.
        #expect(try store.loadSignedPreKey(id: original.id) != nil)
        _ = try manager.rotateSignedPreKeyIfDue(store: store, now: 31 * day)
        #expect(try store.loadSignedPreKey(id: original.id) != nil)
        _ = try manager.rotateSignedPreKeyIfDue(store: store, now: 33 * day)
        #expect(try store.loadSignedPreKey(id: original.id) == nil)
        #expect(try store.loadSignedPreKey(id: third.id) != nil)
    }

    @Test func registrationPublishesSignedKyberPreKeys() throws {
        let (store, dir) = try makeStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = try KeyManager().registrationKeys(store: store, now: 1_000)
        let identity = try store.identityKeyPair().identityKey.publicKey
        let lastResort = try #require(keys.kyberLastResortPreKey)
        #expect(lastResort.isLastResort)
        #expect(keys.kyberOneTimePreKeys.count == KeyManager().policy.kyberBatchSize)
        #expect(keys.kyberOneTimePreKeys.allSatisfy { !$0.isLastResort })
        // One id counter for both kinds: an id names one key.
        let ids = [lastResort.id] + keys.kyberOneTimePreKeys.map(\.id)
        #expect(Set(ids).count == ids.count)
        for record in [lastResort] + keys.kyberOneTimePreKeys {
            #expect(record.keyPair.publicKey.serialized.count == 1569)
            #expect(XEdDSA.verify(record.signature, of: record.keyPair.publicKey.serialized, by: identity))
            #expect(try store.loadKyberPreKey(id: record.id)?.keyPair.publicKey == record.keyPair.publicKey)
        }
        #expect(try store.sessionPolicy() == .requirePostQuantum)
    }

    @Test func lastResortKyberRotationKeepsThePreviousForTheGracePeriod() throws {
        let (store, dir) = try makeStore()
        defer { try? FileManager.default.removeItem(at: dir) }
        let manager = KeyManager()
        let day: UInt64 = 24 * 3600
        let original = try #require(try manager.registrationKeys(store: store, now: 0).kyberLastResortPreKey)
        #expect(try manager.rotateKyberLastResortIfDue(store: store, now: day) == nil)
        let second = try #require(try manager.rotateKyberLastResortIfDue(store: store, now: 2 * day))
        #expect(second.id != original.id && second.isLastResort)
        #expect(try manager.currentKyberLastResort(store: store)?.id == second.id)
        _ = try #require(try manager.rotateKyberLastResortIfDue(store: store, now: 4 * day))
        _ = try manager.rotateKyberLastResortIfDue(store: store, now: 31 * day)
        #expect(try store.loadKyberPreKey(id: original.id) != nil)
        _ = try manager.rotateKyberLastResortIfDue(store: store, now: 33 * day)
        #expect(try store.loadKyberPreKey(id: original.id) == nil)
        // One-time Kyber prekeys are not touched by rotation.
        #expect(try store.kyberPreKeys().filter { !$0.isLastResort }.count == manager.policy.kyberBatchSize)
    }
}
