import Crypto
import Foundation
import GRDB
import ParleyCrypto
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, items 8 and 9: link codes are stored as hashes, and every key upload is checked (formats, and the
/// signed prekey's signature under the identity key).
@Suite("Key checks and link code storage", .timeLimit(.minutes(3)))
struct KeyAndLinkStorageTests {
    /// SQLite's table and files are read here, so this test pins SQLite; StoreBackendTests.linkCodesAreStoredHashed
    /// checks both backends' tables.
    @Test func linkCodesAreStoredOnlyAsHashes() async throws {
        let relay = try await TestRelay.start(databasePath: TestRelay.sqlitePath())
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self).code

        // Neither the table nor the database files hold the code; the table holds its SHA-256.
        let store = try #require(relay.running.core.store as? SQLiteRelayStore)
        let stored = try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM link_code") }
        #expect(stored.count == 1)
        for row in stored {
            for column in row.columnNames {
                let value: DatabaseValue = row[column]
                if case .string(let text) = value.storage { #expect(!text.contains(code), "column \(column)") }
            }
            #expect(row["code_hash"] as Data? == Data(SHA256.hash(data: Data(code.utf8))))
        }
        for suffix in ["", "-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: relay.databasePath + suffix))) ?? Data()
            #expect(bytes.range(of: Data(code.utf8)) == nil, "the code is in \(relay.databasePath + suffix)")
        }

        // The flow works by the code as before; a wrong code of the same shape does not.
        let wrong = String(code.dropLast()) + (code.hasSuffix("A") ? "B" : "A")
        let miss = try await http.call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: wrong, device: Fixtures.keys()))
        #expect(miss.status == 404)
        let claim = try await http.call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code, device: Fixtures.keys()))
        #expect(claim.status == 201)
        let info = try await http.call(.GET, "/v1/devices/links/\(code)", alice).decode(LinkClaimInfo.self)
        #expect(info.state == .claimed)
        #expect(info.code == code)
        #expect(try await http.call(
            .POST, "/v1/devices/links/\(code)/approve", alice, body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(32))).status == 204)
        try await relay.stop()
    }

    /// An open code from before the migration still works afterwards (the migration hashes it).
    @Test func migrationHashesExistingCodes() throws {
        let queue = try DatabaseQueue()
        let migrator = SQLiteSchema.migrator()
        try migrator.migrate(queue, upTo: "relay-v3-queue-entry-by-message")
        try queue.write { db in
            try db.execute(sql: "INSERT INTO account (name, created_at) VALUES ('alice', 1)")
            try db.execute(
                sql: """
                    INSERT INTO link_code (code, account_id, creator_device_id, state, created_at, expires_at)
                    VALUES ('the-old-code', 1, 1, 'open', 1, 9999999999999)
                    """)
        }
        try migrator.migrate(queue)
        let hash = try queue.read { db in try Data.fetchOne(db, sql: "SELECT code_hash FROM link_code") }
        #expect(hash == Credentials.hash("the-old-code"))
    }

    @Test func everyKeyUploadIsChecked() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        func register(_ keys: NewDeviceKeys) async throws -> HTTPTestClient.Reply {
            try await http.call(.POST, "/v1/accounts", body: RegisterAccountRequest(name: Fixtures.uniqueName("k"), device: keys))
        }
        let identity = Fixtures.identity()
        let good = Fixtures.keys(identity: identity)

        // Registration: identity of 3 bytes, wrong type byte; signed prekey not signed by the identity; a
        // truncated signature; a one-time prekey of 32 bytes.
        var bad = good
        bad.identityKey = Fixtures.bytes(3)
        var reply = try await register(bad)
        #expect(reply.status == 400)
        #expect(reply.error?.code == .invalidField)
        bad = good
        bad.identityKey[0] = 0x06
        #expect(try await register(bad).status == 400)
        bad = good
        bad.signedPreKey = Fixtures.signedPreKey(identity: Fixtures.identity())
        reply = try await register(bad)
        #expect(reply.status == 400)
        #expect(reply.error?.message.contains("signature") == true)
        bad = good
        bad.signedPreKey.signature = bad.signedPreKey.signature.prefix(63)
        #expect(try await register(bad).status == 400)
        bad = good
        bad.oneTimePreKeys[0].publicKey = Fixtures.bytes(32)
        #expect(try await register(bad).status == 400)
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: good)

        // Link claim: a signed prekey not signed by the claiming key.
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self).code
        var claimKeys = Fixtures.keys()
        claimKeys.signedPreKey = Fixtures.signedPreKey(identity: identity)
        reply = try await http.call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code, device: claimKeys))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .invalidField)

        // PUT /v1/keys: a signed prekey not signed by the stored identity; a malformed one-time prekey.
        let foreign = UploadPreKeysRequest(signedPreKey: Fixtures.signedPreKey(id: 2, identity: Fixtures.identity()))
        reply = try await http.call(.PUT, "/v1/keys", alice, body: foreign)
        #expect(reply.status == 400)
        #expect(reply.error?.code == .invalidField)
        let malformed = UploadPreKeysRequest(oneTimePreKeys: [OneTimePreKey(keyId: 77, publicKey: Data([0x05, 1, 2]))])
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: malformed).status == 400)
        // The bundle still has the registered signed prekey; a valid one replaces it.
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        var bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.signedPreKey == good.signedPreKey)
        let next = Fixtures.signedPreKey(id: 3, identity: identity)
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(signedPreKey: next)).status == 200)
        bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.signedPreKey == next)
        try await relay.stop()
    }
}
