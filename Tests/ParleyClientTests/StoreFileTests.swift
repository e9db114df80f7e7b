import Foundation
import GRDB
@testable import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// The store's files: permissions, creation and opening rules, schema versions.
@Suite struct StoreFileTests {
    static func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try #require(attributes[.posixPermissions] as? Int)
    }

    @Test(arguments: [false, true])
    func filesAreOwnerOnly(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let conversation = try device.store.directConversation(with: "bob")
        _ = try device.store.insertMessage(
            NewMessage(conversation: conversation.id, sender: device.address, outgoing: true, sentAt: 1, body: "hi"))
        let files = [device.path, device.path + "-wal", device.path + "-shm"]
        for file in files {
            #expect(FileManager.default.fileExists(atPath: file), "\(file) should exist in WAL mode")
            #expect(try Self.mode(file) == 0o600, "\(file)")
        }
        let journal = try withRawDatabase(device.path) { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(journal == "wal")
    }

    @Test func openingTightensAFileWithWiderPermissions() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        try device.store.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: device.path)
        let store = try DeviceStore.open(at: device.path)
        #expect(try Self.mode(device.path) == 0o600)
        #expect(try store.localRegistrationId() == device.registrationId)
    }

    @Test func createAndOpenCheckWhatIsAtThePath() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let identity = try IdentityKeyPair.generate()
        #expect(throws: DeviceStoreError.alreadyExists(path: device.path)) {
            try DeviceStore.create(at: device.path, identity: identity, registrationId: 1)
        }
        // The existing store was not touched by the refused create.
        #expect(try device.store.identityKeyPair().identityKey == device.identity.identityKey)

        let missing = dir.file("missing.sqlite")
        #expect(throws: DeviceStoreError.notFound(path: missing)) { try DeviceStore.open(at: missing) }
        #expect(!FileManager.default.fileExists(atPath: missing))

        // Some other SQLite database is not a device store.
        let foreign = dir.file("foreign.sqlite")
        try withRawDatabase(foreign) { db in try db.execute(sql: "CREATE TABLE t (x)") }
        #expect(throws: DeviceStoreError.notInitialised) { try DeviceStore.open(at: foreign) }

        // A file that is not SQLite at all.
        let garbage = dir.file("garbage.sqlite")
        #expect(FileManager.default.createFile(atPath: garbage, contents: Data((0..<4096).map { UInt8($0 % 251) })))
        #expect(throws: DeviceStoreError.notInitialised) { try DeviceStore.open(at: garbage) }

        // A directory that does not exist: an I/O error, not a crash.
        let missingDirectory = dir.file("no/such/dir.sqlite")
        #expect(throws: DeviceStoreError.io(path: missingDirectory, errno: ENOENT)) {
            try DeviceStore.create(at: missingDirectory, identity: identity, registrationId: 1)
        }
    }

    @Test func aStoreWrittenByANewerClientIsRefusedAndLeftAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        try device.store.close()
        try withRawDatabase(device.path) { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('client-v99-future')")
            try db.execute(sql: "CREATE TABLE future_table (x)")
        }
        #expect(throws: DeviceStoreError.schemaTooNew(unknownMigrations: ["client-v99-future"])) {
            try DeviceStore.open(at: device.path)
        }
        let migrations = try withRawDatabase(device.path) { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
        // Every migration this client knows, and the unknown one, untouched.
        #expect(migrations == (StoreSchema.migrator().migrations + ["client-v99-future"]).sorted())
        #expect(migrations.contains("client-v1") && migrations.contains("client-v2") && migrations.contains("client-v3"))
    }

    @Test func sqliteErrorsAreWrapped() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        try device.store.close()
        // Every call on a closed store fails with a typed error.
        let error = #expect(throws: DeviceStoreError.self) { try device.store.localRegistrationId() }
        guard case .database(let code, _) = error else {
            Issue.record("expected a wrapped SQLite error, got \(String(describing: error))")
            return
        }
        #expect(code == 21)  // SQLITE_MISUSE
    }
}
