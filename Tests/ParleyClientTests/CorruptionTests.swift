import Foundation
import GRDB
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// Rows damaged or moved behind the store's back (by bit rot or by someone holding the file)
/// give `corruptRow` for that row only; the rest of the store keeps working.
@Suite struct CorruptionTests {
    static func flipLastByte(_ data: Data?) -> Data {
        var bytes = Array(data ?? Data())
        if !bytes.isEmpty { bytes[bytes.count - 1] ^= 0x40 }
        return Data(bytes)
    }

    @Test(arguments: [false, true])
    func aCorruptSessionRowFailsAloneWithATypedError(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        let carol = try TestDevice.create(name: "carol", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        try SessionBuilder.process(bundle: try carol.publishBundle(), for: carol.address, store: alice.store)
        try alice.store.close()

        try withRawDatabase(alice.path) { db in
            if sealed {
                let sealedRecord = try Data.fetchOne(db, sql: "SELECT record_sealed FROM session WHERE name = 'bob'")
                try db.execute(sql: "UPDATE session SET record_sealed = ? WHERE name = 'bob'", arguments: [Self.flipLastByte(sealedRecord)])
            } else {
                // Not a protobuf session record at all.
                try db.execute(sql: "UPDATE session SET record_sealed = x'ffffffff00' WHERE name = 'bob'")
            }
        }
        alice.store = try DeviceStore.open(at: alice.path, passphrase: alice.passphrase)

        let error = #expect(throws: DeviceStoreError.self) { try alice.store.loadSession(for: bob.address) }
        guard case .corruptRow(let table, let key, _) = error else {
            Issue.record("expected corruptRow, got \(String(describing: error))")
            return
        }
        #expect(table == "session")
        #expect(key == "bob/1")
        // The protocol layer sees the same typed error, and nothing else is affected.
        #expect(throws: DeviceStoreError.self) { try encrypt("x", to: bob.address, store: alice.store) }
        let toCarol = try encrypt("still fine", to: carol.address, store: alice.store)
        #expect(try decrypt(toCarol, from: alice.address, store: carol.store) == "still fine")
        #expect(try alice.store.identityKeyPair().identityKey == alice.identity.identityKey)
        // Recovery: drop the unreadable session and start a new one from a fresh bundle.
        try alice.store.deleteSession(for: bob.address)
        try SessionBuilder.process(bundle: try bob.publishBundle(preKeyId: 8), for: bob.address, store: alice.store)
        #expect(try alice.store.loadSession(for: bob.address)?.hasCurrentSession == true)
    }

    @Test func aSealedValueMovedToAnotherRowDoesNotOpen() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        for id in UInt32(1)...2 {
            try device.store.storePreKey(PreKeyRecord(id: id, keyPair: try PrivateKey.generate(using: SystemRandom.shared)))
        }
        try device.store.close()
        // Copy prekey 1 (public and sealed private key) over prekey 2: the bytes are a valid
        // sealed value, but bound to row 1.
        try withRawDatabase(device.path) { db in
            try db.execute(
                sql: """
                    UPDATE prekey SET public_key = (SELECT public_key FROM prekey WHERE id = 1),
                        private_key_sealed = (SELECT private_key_sealed FROM prekey WHERE id = 1) WHERE id = 2
                    """)
        }
        device.store = try DeviceStore.open(at: device.path, passphrase: device.passphrase)
        #expect(try device.store.loadPreKey(id: 1) != nil)
        #expect(throws: DeviceStoreError.corruptRow(table: "prekey", key: "2", reason: "sealed value does not open")) {
            try device.store.loadPreKey(id: 2)
        }
    }

    @Test func aCorruptMessageBodyIsReportedPerMessage() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let conversation = try device.store.directConversation(with: "bob")
        let bob = ProtocolAddress(name: "bob", deviceId: 1)
        var ids: [MessageID] = []
        for i in 0..<3 {
            ids.append(
                try device.store.insertMessage(
                    NewMessage(conversation: conversation.id, sender: bob, outgoing: false, receivedAt: Int64(i), body: "body \(i)")
                ).id)
        }
        try device.store.close()
        try withRawDatabase(device.path) { db in
            let sealed = try Data.fetchOne(db, sql: "SELECT body_sealed FROM message WHERE id = ?", arguments: [ids[1].rawValue])
            try db.execute(
                sql: "UPDATE message SET body_sealed = ? WHERE id = ?", arguments: [Self.flipLastByte(sealed), ids[1].rawValue])
        }
        device.store = try DeviceStore.open(at: device.path, passphrase: device.passphrase)

        let page = try device.store.messages(in: conversation.id, limit: 10)
        #expect(page.messages.map(\.id) == ids.reversed())
        #expect(page.messages.map(\.body) == ["body 2", nil, "body 0"])
        #expect(page.messages[1].unreadable == .corruptRow(table: "message", key: String(ids[1].rawValue), reason: "sealed value does not open"))
        #expect(page.messages[0].unreadable == nil)
        #expect(throws: DeviceStoreError.self) { try device.store.message(id: ids[1]) }
        #expect(try device.store.message(id: ids[2])?.body == "body 2")
        // Search indexes what it can read.
        #expect(try device.store.searchMessages("body").map(\.id) == [ids[2], ids[0]])
    }

    @Test func corruptIdentityAndMetadataAreTypedErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        try device.store.close()
        // A sealed private key whose public key column was swapped for another key.
        let other = try IdentityKeyPair.generate().identityKey.serialized
        try withRawDatabase(device.path) { db in
            try db.execute(sql: "UPDATE local_identity SET public_key = ?", arguments: [Data(other)])
        }
        let store = try DeviceStore.open(at: device.path, passphrase: testPassphrase)
        #expect(throws: DeviceStoreError.corruptRow(table: "local_identity", key: "1", reason: "private key does not match its public key")) {
            try store.identityKeyPair()
        }
        #expect(try store.localRegistrationId() == device.registrationId)
        try store.close()

        // Argon2id limits far beyond the sensitive preset are refused before any work is done.
        try withRawDatabase(device.path) { db in
            try db.execute(sql: "UPDATE meta SET value = ? WHERE name = 'kdf_memlimit'", arguments: [Int64(1) << 40])
        }
        let error = #expect(throws: DeviceStoreError.self) { try DeviceStore.open(at: device.path, passphrase: testPassphrase) }
        guard case .corruptMetadata = error else {
            Issue.record("expected corruptMetadata, got \(String(describing: error))")
            return
        }
    }

    @Test func valuesOfTheWrongShapeAreCorruptRowsNotCrashes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let bob = ProtocolAddress(name: "bob", deviceId: 1)
        try device.store.storePreKey(PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared)))
        try device.store.saveIdentity(try IdentityKeyPair.generate().identityKey, for: bob)
        try device.store.saveContactDevice(account: "bob", deviceId: 1, registrationId: 77)
        try device.store.close()
        try withRawDatabase(device.path) { db in
            try db.execute(sql: "UPDATE prekey SET private_key_sealed = x'0102' WHERE id = 1")
            try db.execute(sql: "UPDATE remote_identity SET public_key = x'00'")
            try db.execute(sql: "UPDATE local_identity SET registration_id = 'not a number'")
            try db.execute(sql: "UPDATE contact_device SET registration_id = -5")
        }
        device.store = try DeviceStore.open(at: device.path)
        #expect(throws: DeviceStoreError.corruptRow(table: "prekey", key: "1", reason: "private key does not decode")) {
            try device.store.loadPreKey(id: 1)
        }
        #expect(throws: DeviceStoreError.corruptRow(table: "remote_identity", key: "bob.1", reason: "not a public key")) {
            try device.store.identity(for: bob)
        }
        #expect(throws: DeviceStoreError.self) { try device.store.localRegistrationId() }
        #expect(throws: DeviceStoreError.self) { try device.store.contactDevices(account: "bob") }
        // Everything else still works.
        #expect(try device.store.identityKeyPair().identityKey == device.identity.identityKey)
        #expect(try device.store.contact(account: "bob") != nil)
    }
}
