import Foundation
import GRDB
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Secrets at rest: with a passphrase, private keys, records and bodies never reach the file in
/// the clear, and only the right passphrase opens the store.
@Suite struct PassphraseTests {
    /// What a store holds that must not be readable from its files.
    struct Secrets {
        var identityPrivate: [UInt8]
        var preKeyPrivate: [UInt8]
        var signedPreKeyPrivate: [UInt8]
        var senderChainKey: [UInt8]
        var body: [UInt8]
        var bodyToken: [UInt8]
    }

    static let body = "Meet me at the XYZZYPLUGH fountain at noon"

    /// Fills a store with one of everything and returns the secrets it holds.
    static func fill(_ device: TestDevice, peer: TestDevice) throws -> Secrets {
        let store = device.store
        let preKey = PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        try store.storePreKey(preKey)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: device.identity, timestamp: 1)
        try store.storeSignedPreKey(signed)
        try SessionBuilder.process(bundle: try peer.publishBundle(), for: peer.address, store: store)
        let distribution = try GroupCipher.createDistributionMessage(
            for: SenderKeyName(groupId: "g", sender: device.address), store: store)
        let conversation = try store.directConversation(with: peer.address.name)
        _ = try store.insertMessage(
            NewMessage(conversation: conversation.id, sender: peer.address, outgoing: false, receivedAt: 1, body: body))
        return Secrets(
            identityPrivate: device.identity.privateKey.rawBytes().copyBytes(),
            preKeyPrivate: preKey.keyPair.rawBytes().copyBytes(),
            signedPreKeyPrivate: signed.keyPair.rawBytes().copyBytes(),
            senderChainKey: distribution.chainKey,
            body: Array(body.utf8),
            bodyToken: Array("xyzzyplugh".utf8))
    }

    /// All bytes of the database, `-wal` and `-shm` files.
    static func allFileBytes(_ path: String) -> [UInt8] {
        fileBytes(path) + fileBytes(path + "-wal") + fileBytes(path + "-shm")
    }

    static func visible(_ secrets: Secrets, in bytes: [UInt8]) -> [String: Bool] {
        [
            "identity private key": bytes.contains(subsequence: secrets.identityPrivate),
            "prekey private key": bytes.contains(subsequence: secrets.preKeyPrivate),
            "signed prekey private key": bytes.contains(subsequence: secrets.signedPreKeyPrivate),
            "sender chain key": bytes.contains(subsequence: secrets.senderChainKey),
            "message body": bytes.contains(subsequence: secrets.body),
            "indexed body token": bytes.contains(subsequence: secrets.bodyToken),
        ]
    }

    @Test func sealedValuesAreNotInTheFilesInTheClear() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let peer = try TestDevice.create(name: "bob", in: dir, sealed: false)
        let secrets = try Self.fill(device, peer: peer)
        // Search builds the in-memory index; it must not reach the files either.
        #expect(try device.store.searchMessages("xyzzyplugh").count == 1)

        // While open (recent pages in the WAL) and after closing (checkpointed into the file).
        let whileOpen = Self.visible(secrets, in: Self.allFileBytes(device.path))
        try device.store.close()
        let afterClose = Self.visible(secrets, in: Self.allFileBytes(device.path))
        for (what, seen) in whileOpen { #expect(seen == false, "\(what) is in the files while open") }
        for (what, seen) in afterClose { #expect(seen == false, "\(what) is in the file after close") }

        // The same data survives: the right passphrase opens it all.
        device.store = try DeviceStore.open(at: device.path, passphrase: testPassphrase)
        #expect(try device.store.identityKeyPair().privateKey.rawBytes().copyBytes() == secrets.identityPrivate)
        #expect(try device.store.loadPreKey(id: 1)?.keyPair.rawBytes().copyBytes() == secrets.preKeyPrivate)
        #expect(try device.store.searchMessages("XYZZYPLUGH").first?.body == Self.body)
    }

    /// The control for the test above: the same scan does find the values in a clear store, so
    /// "not found" above means sealed, not "looked in the wrong place".
    @Test func clearStoresHoldTheSameValuesInTheClear() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let peer = try TestDevice.create(name: "bob", in: dir, sealed: false)
        let secrets = try Self.fill(device, peer: peer)
        try device.store.close()
        for (what, seen) in Self.visible(secrets, in: Self.allFileBytes(device.path)) {
            #expect(seen, "\(what) should be in a clear store's file")
        }
    }

    @Test func onlyTheRightPassphraseOpensTheStore() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        try device.store.storePreKey(PreKeyRecord(id: 4, keyPair: try PrivateKey.generate(using: SystemRandom.shared)))
        try device.store.close()

        #expect(throws: DeviceStoreError.wrongPassphrase) {
            try DeviceStore.open(at: device.path, passphrase: Passphrase("correct horse battery stapler"))
        }
        #expect(throws: DeviceStoreError.wrongPassphrase) { try DeviceStore.open(at: device.path, passphrase: Passphrase("")) }
        #expect(throws: DeviceStoreError.passphraseRequired) { try DeviceStore.open(at: device.path) }

        let reopened = try DeviceStore.open(at: device.path, passphrase: Passphrase("correct horse battery staple"))
        #expect(reopened.isSealed)
        #expect(try reopened.identityKeyPair().identityKey == device.identity.identityKey)
        #expect(try reopened.loadPreKey(id: 4) != nil)
    }

    @Test func aClearStoreRefusesAPassphrase() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        try device.store.close()
        #expect(throws: DeviceStoreError.notSealed) { try DeviceStore.open(at: device.path, passphrase: testPassphrase) }
        #expect(try DeviceStore.open(at: device.path).isSealed == false)
    }

    @Test func eachStoreHasItsOwnSaltAndSealsWithFreshNonces() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // Two stores, same passphrase, same private key: the sealed values differ.
        let identity = try IdentityKeyPair.generate()
        let a = try DeviceStore.create(at: dir.file("a.sqlite"), identity: identity, registrationId: 1, passphrase: testPassphrase, cost: .interactive)
        let b = try DeviceStore.create(at: dir.file("b.sqlite"), identity: identity, registrationId: 1, passphrase: testPassphrase, cost: .interactive)
        try a.close()
        try b.close()
        let sealedA = try withRawDatabase(dir.file("a.sqlite")) { db in
            try Data.fetchOne(db, sql: "SELECT private_key_sealed FROM local_identity")
        }
        let sealedB = try withRawDatabase(dir.file("b.sqlite")) { db in
            try Data.fetchOne(db, sql: "SELECT private_key_sealed FROM local_identity")
        }
        let saltA = try withRawDatabase(dir.file("a.sqlite")) { db in try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'kdf_salt'") }
        let saltB = try withRawDatabase(dir.file("b.sqlite")) { db in try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'kdf_salt'") }
        #expect(sealedA != nil && sealedA != sealedB)
        #expect(saltA?.count == 16 && saltA != saltB)
        // 1 version byte + 24-byte nonce + 32-byte key + 16-byte tag.
        #expect(sealedA?.count == 73)
    }

    /// The default cost is `.standard` (2 passes, 192 MiB: one unlock under about 0.5 s and 300 MB on the
    /// reference machine, Specs/storage.md), recorded in the file and used again when opening.
    @Test func theDefaultCostIsStandardAndIsRecorded() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("standard.sqlite")
        let store = try DeviceStore.create(
            at: path, identity: try IdentityKeyPair.generate(), registrationId: 3, passphrase: testPassphrase)
        try store.close()
        #expect(try Self.limits(path) == ["kdf_memlimit=201326592", "kdf_opslimit=2", "sealing=\"argon2id13+xchacha20poly1305\""])
        #expect(try DeviceStore.open(at: path, passphrase: testPassphrase).localRegistrationId() == 3)
    }

    /// A store made with the former default (libsodium's MODERATE: 3 passes, 256 MiB) keeps its parameters
    /// and keeps opening with them.
    @Test func aStoreMadeWithTheFormerModerateCostStillOpens() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("moderate.sqlite")
        let store = try DeviceStore.create(
            at: path, identity: try IdentityKeyPair.generate(), registrationId: 4, passphrase: testPassphrase, cost: .moderate)
        try store.close()
        #expect(try Self.limits(path) == ["kdf_memlimit=268435456", "kdf_opslimit=3", "sealing=\"argon2id13+xchacha20poly1305\""])
        #expect(try DeviceStore.open(at: path, passphrase: testPassphrase).localRegistrationId() == 4)
    }

    static func limits(_ path: String) throws -> [String] {
        try withRawDatabase(path) { db in
            try Row.fetchAll(db, sql: "SELECT name, value FROM meta WHERE name IN ('kdf_opslimit', 'kdf_memlimit', 'sealing') ORDER BY name")
                .map { row -> String in
                    let name: String = row["name"]
                    let value: DatabaseValue = row["value"]
                    return "\(name)=\(value)"
                }
        }
    }
}
