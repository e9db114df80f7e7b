import Foundation
import GRDB
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Deleted keys leave no copy in the store's files (issue 10, defect 4b): SQLite keeps old page
/// images in the `-wal` file until a checkpoint, and a checkpoint does not shrink the file, so
/// the store checkpoints and truncates the WAL after deleting key material.
@Suite struct KeyErasureTests {
    static func allFileBytes(_ path: String) -> [UInt8] {
        fileBytes(path) + fileBytes(path + "-wal") + fileBytes(path + "-shm")
    }

    @Test(arguments: [false, true])
    func aUsedOneTimePreKeyIsGoneFromTheDatabaseWalAndShm(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: sealed)
        try SessionBuilder.process(bundle: try bob.publishBundle(preKeyId: 7), for: bob.address, store: alice.store)
        // What identifies the prekey's private key in the files: its raw bytes in a clear store,
        // its sealed value in a sealed one.
        let secret = try #require(try bob.store.loadPreKey(id: 7)).keyPair.rawBytes().copyBytes()
        let sealedValue = try withRawDatabase(bob.path) { db in
            try Data.fetchOne(db, sql: "SELECT private_key_sealed FROM prekey WHERE id = 7")
        }
        let needle = sealed ? Array(try #require(sealedValue)) : secret
        let before = Self.allFileBytes(bob.path).contains(subsequence: needle)
        #expect(before, "control: the key is in the files before it is used")

        // Bob's store is open and in use: the first message uses the prekey, which is deleted.
        #expect(try decrypt(try encrypt("hi", to: bob.address, store: alice.store), from: alice.address, store: bob.store) == "hi")
        #expect(try bob.store.loadPreKey(id: 7) == nil)
        let files = Self.allFileBytes(bob.path)
        let stillThere = files.contains(subsequence: needle) || files.contains(subsequence: secret)
        #expect(!stillThere, "the used prekey is still in the database, -wal or -shm file")
    }

    /// Superseded session records (older chain keys) are erased in batches: at the latest when the
    /// store is scrubbed (the engine does it when a backlog is drained) or closed.
    @Test func supersededSessionRecordsAreErasedByAScrub() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        let before = try #require(try alice.store.loadSession(for: bob.address)).serialized()
        for i in 0..<3 { _ = try encrypt("m\(i)", to: bob.address, store: alice.store) }
        let after = try #require(try alice.store.loadSession(for: bob.address)).serialized()
        // A stretch of the old record that the new one does not contain (the old sending chain key).
        let stretch = try #require(
            stride(from: 0, to: before.count - 32, by: 1).lazy.map { Array(before[$0..<($0 + 32)]) }
                .first { !after.contains(subsequence: $0) })
        try alice.store.scrub()
        let stillThere = Self.allFileBytes(alice.path).contains(subsequence: stretch)
        #expect(!stillThere, "a superseded chain key is still in the database, -wal or -shm file")
    }
}
