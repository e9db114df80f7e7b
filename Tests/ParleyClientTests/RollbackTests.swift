import Foundation
import GRDB
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Rollback of sealed rows (issue 10, defect 4a): someone holding the store file copies an older
/// sealed row back (a session whose sending chain is behind, a one-time prekey already used). The
/// store refuses it with a typed error, changes nothing, and a sender never reuses a message key.
@Suite struct RollbackTests {
    /// Every column of the rows of `table` matching `condition`, as stored.
    static func rows(_ path: String, _ table: String, where condition: String) throws -> [Row] {
        try withRawDatabase(path) { db in try Row.fetchAll(db, sql: "SELECT * FROM \(table) WHERE \(condition)") }
    }

    /// Puts `rows` back into `table` exactly as they were (replacing rows with the same key).
    static func restore(_ path: String, _ table: String, _ rows: [Row]) throws {
        try withRawDatabase(path) { db in
            for row in rows {
                let columns = Array(row.columnNames)
                let placeholders = Array(repeating: "?", count: columns.count).joined(separator: ", ")
                try db.execute(
                    sql: "INSERT OR REPLACE INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\(placeholders))",
                    arguments: StatementArguments(columns.map { row[$0] as DatabaseValue }))
            }
        }
    }

    /// The (ratchet key, counter) of a pairwise message: what must never repeat for one sender.
    static func messageKey(_ message: CiphertextMessage) -> [UInt8] {
        let inner: SignalMessage
        switch message {
        case .preKey(let m): inner = m.message
        case .signal(let m): inner = m
        }
        return inner.senderRatchetKey.serialized + withUnsafeBytes(of: inner.counter.bigEndian) { Array($0) }
    }

    @Test(arguments: [true, false])
    func anOlderSessionRowIsRefusedAndNoMessageKeyIsUsedTwice(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        var used: Set<[UInt8]> = []
        let first = try encrypt("one", to: bob.address, store: alice.store)
        used.insert(Self.messageKey(first))
        #expect(try decrypt(first, from: alice.address, store: bob.store) == "one")
        try alice.store.close()
        let old = try Self.rows(alice.path, "session", where: "name = 'bob'")
        #expect(old.count == 1)

        try alice.reopen()
        for text in ["two", "three"] {
            let message = try encrypt(text, to: bob.address, store: alice.store)
            used.insert(Self.messageKey(message))
            #expect(try decrypt(message, from: alice.address, store: bob.store) == text)
        }
        try alice.store.close()
        try Self.restore(alice.path, "session", old)
        let restored = try Self.rows(alice.path, "session", where: "name = 'bob'")
        alice.store = try DeviceStore.open(at: alice.path, passphrase: alice.passphrase)

        // Refused with a typed error, on load and on send; the restored row is left as it is.
        #expect(throws: DeviceStoreError.rolledBack(table: "session", key: "bob/1")) { try alice.store.loadSession(for: bob.address) }
        do {
            let again = try encrypt("four", to: bob.address, store: alice.store)
            #expect(!used.contains(Self.messageKey(again)), "a message key was used again for new plaintext")
        } catch let error as DeviceStoreError {
            #expect(error == .rolledBack(table: "session", key: "bob/1"))
        }
        try alice.store.close()
        #expect(try Self.rows(alice.path, "session", where: "name = 'bob'") == restored)

        // The way out: the refused row is discarded and a new session starts from a fresh bundle.
        try alice.reopen()
        try alice.store.discardRolledBackRow(table: "session", key: "bob/1")
        #expect(try alice.store.loadSession(for: bob.address) == nil)
        try SessionBuilder.process(bundle: try bob.publishBundle(preKeyId: 8), for: bob.address, store: alice.store)
        let fresh = try encrypt("five", to: bob.address, store: alice.store)
        #expect(!used.contains(Self.messageKey(fresh)))
        #expect(try decrypt(fresh, from: alice.address, store: bob.store) == "five")
    }

    @Test(arguments: [true, false])
    func aUsedOneTimePreKeyDoesNotComeBack(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        var bob = try TestDevice.create(name: "bob", in: dir, sealed: sealed)
        try SessionBuilder.process(bundle: try bob.publishBundle(preKeyId: 7), for: bob.address, store: alice.store)
        try bob.store.close()
        let unused = try Self.rows(bob.path, "prekey", where: "id = 7")
        try bob.reopen()
        #expect(try decrypt(try encrypt("hi", to: bob.address, store: alice.store), from: alice.address, store: bob.store) == "hi")
        #expect(try bob.store.loadPreKey(id: 7) == nil)  // used: deleted
        try bob.store.close()
        try Self.restore(bob.path, "prekey", unused)
        bob.store = try DeviceStore.open(at: bob.path, passphrase: bob.passphrase)
        #expect(throws: DeviceStoreError.rolledBack(table: "prekey", key: "7")) { try bob.store.loadPreKey(id: 7) }
        #expect(try bob.store.preKeyIds() == [7])  // listed (public), but never usable
    }

    /// A one-time Kyber prekey used by a PQXDH session is deleted; a copy of its row put back is refused, so a
    /// replayed first message cannot make a second session with it.
    @Test(arguments: [true, false])
    func aUsedOneTimeKyberPreKeyDoesNotComeBack(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        var bob = try TestDevice.create(name: "bob", in: dir, sealed: sealed)
        let published = try bob.publishBundle(preKeyId: 7)
        let oneTime = try KyberPreKeyRecord.generate(id: 40, identity: bob.identity, timestamp: 1_700_000_000, lastResort: false)
        try bob.store.storeKyberPreKey(oneTime)
        let bundle = PreKeyBundle(
            registrationId: published.registrationId, deviceId: published.deviceId, identityKey: published.identityKey,
            signedPreKeyId: published.signedPreKeyId, signedPreKey: published.signedPreKey,
            signedPreKeySignature: published.signedPreKeySignature, preKeyId: published.preKeyId, preKey: published.preKey,
            kyberPreKey: PreKeyBundle.KyberPreKey(id: oneTime.id, publicKey: oneTime.keyPair.publicKey, signature: oneTime.signature))
        try SessionBuilder.process(bundle: bundle, for: bob.address, store: alice.store)
        try bob.store.close()
        let unused = try Self.rows(bob.path, "kyber_prekey", where: "id = 40")
        #expect(unused.count == 1)
        try bob.reopen()
        #expect(try decrypt(try encrypt("hi", to: bob.address, store: alice.store), from: alice.address, store: bob.store) == "hi")
        #expect(try bob.store.loadKyberPreKey(id: 40) == nil)  // one-time: deleted once used
        try bob.store.close()
        try Self.restore(bob.path, "kyber_prekey", unused)
        bob.store = try DeviceStore.open(at: bob.path, passphrase: bob.passphrase)
        #expect(throws: DeviceStoreError.rolledBack(table: "kyber_prekey", key: "40")) { try bob.store.loadKyberPreKey(id: 40) }
        // The way out: the row is discarded, and stays gone.
        try bob.store.discardRolledBackRow(table: "kyber_prekey", key: "40")
        #expect(try bob.store.loadKyberPreKey(id: 40) == nil)
        #expect(try bob.store.kyberPreKeys().map(\.id) == [5])
    }

    /// Rolling the rows back together with the store's ledger of them is caught when the store
    /// opens (the ledger's digest, sealed in the metadata, no longer matches); the reset discards
    /// the key state that may be stale (sessions, sender keys) and the store opens again.
    @Test func rowsAndTheirLedgerRolledBackTogetherAreDetectedAtOpen() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        let first = try encrypt("one", to: bob.address, store: alice.store)
        #expect(try decrypt(first, from: alice.address, store: bob.store) == "one")
        try alice.store.close()
        // An older copy of every table but the metadata.
        let tables = try withRawDatabase(alice.path) { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('meta', 'grdb_migrations') AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'message_search%'")
        }
        var old: [String: [Row]] = [:]
        for table in tables { old[table] = try Self.rows(alice.path, table, where: "1") }

        try alice.reopen()
        let second = try encrypt("two", to: bob.address, store: alice.store)
        #expect(try decrypt(second, from: alice.address, store: bob.store) == "two")
        try alice.store.close()
        for table in tables {
            try withRawDatabase(alice.path) { db in try db.execute(sql: "DELETE FROM \(table)") }
            try Self.restore(alice.path, table, old[table] ?? [])
        }

        #expect(throws: DeviceStoreError.storeRolledBack) { try DeviceStore.open(at: alice.path, passphrase: alice.passphrase) }
        let reset = try DeviceStore.resetAfterRollback(at: alice.path, passphrase: alice.passphrase)
        #expect(reset.sessions == 1)
        alice.store = try DeviceStore.open(at: alice.path, passphrase: alice.passphrase)
        #expect(try alice.store.loadSession(for: bob.address) == nil)
        #expect(try alice.store.identityKeyPair().identityKey == alice.identity.identityKey)
    }

    /// A whole store restored from a backup (all files, consistent) is not refused: it opens, and
    /// the sessions it holds are repaired by the peers' decryption-error reports (Specs/client.md §6).
    @Test func aWholeStoreRestoredFromABackupOpens() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        _ = try encrypt("one", to: bob.address, store: alice.store)
        try alice.store.close()
        let backup = dir.file("backup.sqlite")
        try FileManager.default.copyItem(atPath: alice.path, toPath: backup)
        try alice.reopen()
        _ = try encrypt("two", to: bob.address, store: alice.store)
        try alice.store.close()
        try FileManager.default.removeItem(atPath: alice.path)
        try FileManager.default.copyItem(atPath: backup, toPath: alice.path)
        alice.store = try DeviceStore.open(at: alice.path, passphrase: alice.passphrase)
        #expect(try alice.store.loadSession(for: bob.address)?.hasCurrentSession == true)
    }
}
