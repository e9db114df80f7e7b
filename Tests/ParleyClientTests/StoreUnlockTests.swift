import Foundation
import GRDB
@testable import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Opening a sealed store with a cached `StoreKey`, changing its passphrase (atomically), and the kernel
/// keyring that `parley unlock` keeps the key in.
@Suite struct StoreUnlockTests {
    /// A sealed store with a prekey and a message in it.
    static func filledStore(in dir: TemporaryDirectory) throws -> TestDevice {
        let device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        try device.store.storePreKey(PreKeyRecord(id: 4, keyPair: try PrivateKey.generate(using: SystemRandom.shared)))
        let conversation = try device.store.directConversation(with: "bob")
        _ = try device.store.insertMessage(
            NewMessage(conversation: conversation.id, sender: ProtocolAddress(name: "bob", deviceId: 1), outgoing: false, receivedAt: 1, body: "sealed words"))
        return device
    }

    static func contents(_ store: DeviceStore, identity: IdentityKeyPair) throws -> Bool {
        let conversation = try store.directConversation(with: "bob")
        return try store.identityKeyPair().identityKey == identity.identityKey && store.loadPreKey(id: 4) != nil
            && store.messages(in: conversation.id, limit: 10).messages.compactMap(\.body) == ["sealed words"]
    }

    /// A filled sealed store, closed, and its store key (what `parley unlock` would keep).
    static func closedFilledStore(in dir: TemporaryDirectory) throws -> (device: TestDevice, key: StoreKey) {
        let device = try filledStore(in: dir)
        let key = try #require(device.store.storeKey)
        try device.store.close()
        return (device, key)
    }

    @Test func theStoreKeyOpensTheStoreWithoutThePassphraseAndOnlyThatStore() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (device, key) = try Self.closedFilledStore(in: dir)

        let reopened = try DeviceStore.open(at: device.path, unlock: .key(key))
        #expect(try Self.contents(reopened, identity: device.identity))
        try reopened.close()

        // Another sealed store's key, or a clear store: typed errors, nothing opened.
        let other = try TestDevice.create(name: "carol", in: dir, sealed: true)
        let otherKey = try #require(other.store.storeKey)
        try other.store.close()
        #expect(throws: DeviceStoreError.storeKeyMismatch) { try DeviceStore.open(at: device.path, unlock: .key(otherKey)) }
        let clear = try TestDevice.create(name: "dave", in: dir, sealed: false)
        #expect(clear.store.storeKey == nil)
        try clear.store.close()
        #expect(throws: DeviceStoreError.notSealed) { try DeviceStore.open(at: clear.path, unlock: .key(key)) }
    }

    @Test func aWrongPassphraseLeavesTheFilesUntouched() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try Self.filledStore(in: dir)
        try device.store.close()
        let before = try storeRows(device.path)
        #expect(throws: DeviceStoreError.wrongPassphrase) { try DeviceStore.open(at: device.path, passphrase: Passphrase("not it")) }
        let unchanged = try storeRows(device.path) == before
        #expect(unchanged)
        #expect(before.count > 10)
    }

    @Test func changingThePassphraseKeepsEverythingAndOnlyTheNewOneOpens() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try Self.filledStore(in: dir)
        let keyBefore = try #require(device.store.storeKey).withBytes { Array($0) }
        let newPassphrase = Passphrase("a much better passphrase")
        try device.store.changePassphrase(to: newPassphrase, cost: .interactive)
        // The old salt and wrapped key did not stay behind in the WAL (checkpointed and truncated).
        #expect(fileBytes(device.path + "-wal").isEmpty)
        try device.store.close()

        #expect(throws: DeviceStoreError.wrongPassphrase) { try DeviceStore.open(at: device.path, passphrase: testPassphrase) }
        let reopened = try DeviceStore.open(at: device.path, passphrase: newPassphrase)
        #expect(try Self.contents(reopened, identity: device.identity))
        // The values stay sealed under the same store key (a cached key stays valid; the ledger verified on open).
        #expect(try #require(reopened.storeKey).withBytes { Array($0) } == keyBefore)
        // A second change unwraps with the second passphrase and wraps again.
        let third = Passphrase("third time")
        try reopened.changePassphrase(to: third, cost: .interactive)
        try reopened.close()
        #expect(throws: DeviceStoreError.wrongPassphrase) { try DeviceStore.open(at: device.path, passphrase: newPassphrase) }
        #expect(try Self.contents(try DeviceStore.open(at: device.path, passphrase: third), identity: device.identity))
    }

    /// A change that fails after writing some of its rows (as a crash would) leaves the old passphrase working.
    @Test(arguments: 0..<StoreMetadata.passphraseRows.count)
    func anInterruptedChangeLeavesTheOldPassphraseWorking(after rows: Int) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try Self.filledStore(in: dir)
        let newPassphrase = Passphrase("never committed")
        #expect(throws: DeviceStoreError.invalidArgument("interrupted (test)")) {
            try device.store.changePassphrase(to: newPassphrase, cost: .interactive, interruptAfter: rows)
        }
        // The same connection still works, and from disk only the old passphrase opens it.
        #expect(try Self.contents(device.store, identity: device.identity))
        try device.store.close()
        #expect(throws: DeviceStoreError.wrongPassphrase) { try DeviceStore.open(at: device.path, passphrase: newPassphrase) }
        #expect(try Self.contents(try DeviceStore.open(at: device.path, passphrase: testPassphrase), identity: device.identity))
    }

    @Test func aClearStoreHasNoPassphraseToChange() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        #expect(throws: DeviceStoreError.notSealed) { try device.store.changePassphrase(to: testPassphrase, cost: .interactive) }
        try device.store.close()
        #expect(try DeviceStore.open(at: device.path).isSealed == false)
    }

    // MARK: the kernel keyring

    /// Whether this environment has a usable session keyring; prints why not otherwise.
    static func keyringUsable() -> Bool {
        if let reason = SessionKeyring.availability() {
            print("StoreUnlockTests: skipping the keyring checks: \(reason)")
            return false
        }
        return true
    }

    @Test func theKeyringKeepsTheKeyUntilLockOrExpiry() async throws {
        guard Self.keyringUsable() else { return }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (device, key) = try Self.closedFilledStore(in: dir)

        // Miss, then hit under another spelling of the same path, then lock.
        #expect(SessionKeyring.lookup(forStore: device.path) == nil)
        try SessionKeyring.store(key, forStore: device.path)
        let spelled = dir.path + "/./" + URL(fileURLWithPath: device.path).lastPathComponent
        let cached = try #require(SessionKeyring.lookup(forStore: spelled))
        #expect(try Self.contents(try DeviceStore.open(at: device.path, unlock: .key(cached)), identity: device.identity))
        #expect(SessionKeyring.forget(forStore: device.path))
        #expect(SessionKeyring.lookup(forStore: device.path) == nil)
        #expect(!SessionKeyring.forget(forStore: device.path))

        // Unlocked again after a lock; then the timeout runs out (waited for with a generous bound).
        try SessionKeyring.store(key, forStore: device.path, timeout: 1)
        #expect(SessionKeyring.lookup(forStore: device.path) != nil)
        var expired = false
        for _ in 0..<300 where !expired {
            try await Task.sleep(for: .milliseconds(100))
            expired = SessionKeyring.lookup(forStore: device.path) == nil
        }
        #expect(expired)
        SessionKeyring.forget(forStore: device.path)
    }

    @Test func theKeyIsReadableByItsPossessorOnly() throws {
        guard Self.keyringUsable() else { return }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (device, key) = try Self.closedFilledStore(in: dir)
        try SessionKeyring.store(key, forStore: device.path)
        defer { SessionKeyring.forget(forStore: device.path) }
        // /proc/keys lists the key with its permissions: possessor all (3f), user view (01), group and other none.
        let description = SessionKeyring.description(forStore: device.path)
        // Read to the end: `String(contentsOfFile:)` stops after the first 4 KiB of a /proc file, and with the keys of
        // other tests running at the same time this one's line is often further down.
        let keys = try #require(FileHandle(forReadingAtPath: "/proc/keys"))
        defer { try? keys.close() }
        let listing = String(decoding: try keys.readToEnd() ?? Data(), as: UTF8.self)
        let line = listing.split(separator: "\n").first { $0.contains(description) }
        #expect(line?.contains("3f010000") == true, "\(line.map(String.init) ?? "(no line)")")
    }
}
