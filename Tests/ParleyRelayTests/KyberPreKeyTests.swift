import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire
import Testing
@testable import ParleyRelay

/// Signed Kyber prekeys at the relay (PQXDH): stored at registration and by `PUT /v1/keys`, their encoding and
/// signature checked on upload, one-time ones handed out once, the last-resort one whenever no one-time one is
/// left, in single and batched bundle fetches, and counted in the low-prekey notice.
@Suite("Kyber prekeys", .timeLimit(.minutes(3)))
struct KyberPreKeyTests {
    /// A Kyber1024 prekey signed by `signer` (XEdDSA over its 1569 serialized bytes).
    static func kyberPreKey(id: UInt32, signer: IdentityKeyPair) throws -> KyberPreKey {
        let pair = try KEMKeyPair.generate(.kyber1024, using: SystemRandom.shared)
        let signature = try XEdDSA.sign(pair.publicKey.serialized, with: signer.privateKey, using: SystemRandom.shared)
        return KyberPreKey(keyId: id, publicKey: Data(pair.publicKey.serialized), signature: Data(signature))
    }

    static func keys(identity: IdentityKeyPair, lastResort: KyberPreKey?, ecOneTime: Int = 5) -> NewDeviceKeys {
        var keys = Fixtures.keys(oneTimeCount: ecOneTime, identity: identity)
        keys.kyberLastResortPreKey = lastResort
        return keys
    }

    @Test func oneTimeKyberPreKeysAreHandedOutOnceThenTheLastResortOne() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let identity = Fixtures.identity()
        let lastResort = try Self.kyberPreKey(id: 100, signer: identity)
        let oneTime = [try Self.kyberPreKey(id: 1, signer: identity), try Self.kyberPreKey(id: 2, signer: identity)]
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Self.keys(identity: identity, lastResort: lastResort))
        // One-time Kyber prekeys come with the first authenticated upload (they do not fit a registration body).
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberOneTimePreKeys: oneTime)).status == 200)
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        var status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.kyberOneTimePreKeyCount == 2)
        #expect(status.hasKyberLastResortPreKey)
        #expect(status.refillNeeded)  // 5 EC and 2 Kyber one-time prekeys: under the threshold

        var handedOut: [KyberPreKey?] = []
        for _ in 0..<2 {
            let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
            handedOut.append(bundle.devices.first?.kyberPreKey)
        }
        // The batched endpoint carries them too: now the last-resort key, twice (it is kept).
        for _ in 0..<2 {
            let batch = try await http.call(
                .POST, "/v1/keys/bundles", bob,
                body: PreKeyBundleBatchRequest(accounts: [BundleRequestTarget(account: alice.account)])
            ).decode(PreKeyBundleBatchResponse.self)
            handedOut.append(batch.accounts.first?.devices.first?.kyberPreKey)
        }
        #expect(handedOut == [oneTime[0], oneTime[1], lastResort, lastResort])

        status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.kyberOneTimePreKeyCount == 0)
        #expect(status.hasKyberLastResortPreKey)

        // Refill and rotate: the new last-resort key replaces the old one.
        let rotated = try Self.kyberPreKey(id: 101, signer: identity)
        let refill = try (3...22).map { try Self.kyberPreKey(id: UInt32($0), signer: identity) }
        let upload = try await http.call(
            .PUT, "/v1/keys", alice,
            body: UploadPreKeysRequest(
                oneTimePreKeys: Fixtures.oneTimePreKeys(20, firstKeyId: 50), kyberLastResortPreKey: rotated,
                kyberOneTimePreKeys: refill))
        #expect(upload.status == 200)
        status = try upload.decode(PreKeyStatusResponse.self)
        #expect(status.kyberOneTimePreKeyCount == 20)
        #expect(status.hasKyberLastResortPreKey)
        #expect(!status.refillNeeded)
        let next = try await http.call(.GET, "/v1/keys/\(alice.account)/*", bob).decode(PreKeyBundleResponse.self)
        #expect(next.devices.first?.kyberPreKey == refill[0])
        try await relay.stop()
    }

    /// A registration (unauthenticated) carries at most the last-resort Kyber prekey: its body bound stays ~20 KiB,
    /// and one-time Kyber prekeys in it are an unknown field.
    @Test func registrationsCarryOnlyTheLastResortKyberPreKey() async throws {
        let relay = try await TestRelay.start()
        let identity = Fixtures.identity()
        var json = try JSONSerialization.jsonObject(
            with: try WireCoding.encoder().encode(
                RegisterAccountRequest(
                    name: Fixtures.uniqueName("alice"),
                    device: Self.keys(identity: identity, lastResort: try Self.kyberPreKey(id: 100, signer: identity), ecOneTime: 100))))
            as? [String: Any] ?? [:]
        let ok = try await relay.http.raw(.POST, "/v1/accounts", body: try JSONSerialization.data(withJSONObject: json))
        #expect(ok.status == 201)  // 100 EC one-time prekeys and a last-resort Kyber prekey fit
        var device = json["device"] as? [String: Any] ?? [:]
        let oneTime = try WireCoding.encoder().encode([try Self.kyberPreKey(id: 1, signer: identity)])
        device["kyberOneTimePreKeys"] = try JSONSerialization.jsonObject(with: oneTime)
        json["device"] = device
        json["name"] = Fixtures.uniqueName("bob")
        let refused = try await relay.http.raw(.POST, "/v1/accounts", body: try JSONSerialization.data(withJSONObject: json))
        #expect(refused.status == 400 || refused.status == 413)
        #expect(RelayLimits.registrationBody.bytes < 21 * 1024)
        try await relay.stop()
    }

    @Test func aDeviceWithoutKyberPreKeysIsToldToPublishOne() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Fixtures.keys(oneTimeCount: 50))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(!status.hasKyberLastResortPreKey)
        #expect(status.refillNeeded)
        let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.kyberPreKey == nil)
        try await relay.stop()
    }

    @Test func badKyberPreKeysAreRefusedAndNothingOfTheUploadIsStored() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let identity = Fixtures.identity()
        let mallory = Fixtures.identity()
        let lastResort = try Self.kyberPreKey(id: 100, signer: identity)
        let alice = try await http.register(
            Fixtures.uniqueName("alice"), keys: Self.keys(identity: identity, lastResort: lastResort))

        // Signed by another identity key.
        let foreign = try Self.kyberPreKey(id: 7, signer: mallory)
        var reply = try await http.call(
            .PUT, "/v1/keys", alice,
            body: UploadPreKeysRequest(oneTimePreKeys: Fixtures.oneTimePreKeys(3, firstKeyId: 40), kyberOneTimePreKeys: [foreign]))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .invalidField)
        // A flipped bit in a key: its signature no longer verifies.
        var flipped = try Self.kyberPreKey(id: 8, signer: identity)
        flipped.publicKey[700] ^= 0x01
        reply = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberLastResortPreKey: flipped))
        #expect(reply.status == 400)
        // A key of the wrong length, a key with another type byte, a short signature.
        var short = try Self.kyberPreKey(id: 9, signer: identity)
        short.publicKey = short.publicKey.prefix(1568)
        var mlkem = try Self.kyberPreKey(id: 10, signer: identity)
        mlkem.publicKey[0] = 0x0A
        var shortSignature = try Self.kyberPreKey(id: 11, signer: identity)
        shortSignature.signature = shortSignature.signature.prefix(63)
        for bad in [short, mlkem, shortSignature] {
            reply = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberOneTimePreKeys: [bad]))
            #expect(reply.status == 400)
            #expect(reply.error?.code == .invalidField)
        }
        // A one-time key with the last-resort key's id.
        let clash = try Self.kyberPreKey(id: 100, signer: identity)
        reply = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberOneTimePreKeys: [clash]))
        #expect(reply.status == 400)
        // Registration with a Kyber prekey signed by someone else is refused as well.
        let refused = try await http.call(
            .POST, "/v1/accounts",
            body: RegisterAccountRequest(
                name: Fixtures.uniqueName("eve"), device: Self.keys(identity: identity, lastResort: foreign)))
        #expect(refused.status == 400)

        // Nothing of the refused uploads was stored: the 5 EC one-time prekeys of registration, no Kyber
        // one-time prekey, the original last-resort key.
        let status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 5)
        #expect(status.kyberOneTimePreKeyCount == 0)
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.kyberPreKey == lastResort)
        try await relay.stop()
    }

    @Test func storedOneTimeKyberPreKeysAreCapped() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let identity = Fixtures.identity()
        let alice = try await http.register(
            Fixtures.uniqueName("alice"),
            keys: Self.keys(identity: identity, lastResort: try Self.kyberPreKey(id: 1_000, signer: identity)))
        var nextId: UInt32 = 1
        func batch(_ count: Int) throws -> [KyberPreKey] {
            defer { nextId += UInt32(count) }
            return try (0..<count).map { try Self.kyberPreKey(id: nextId + UInt32($0), signer: identity) }
        }
        for _ in 0..<2 {
            let reply = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberOneTimePreKeys: try batch(100)))
            #expect(reply.status == 200)
        }
        let over = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(kyberOneTimePreKeys: try batch(1)))
        #expect(over.status == 400)
        #expect(over.error?.code == .tooManyItems)
        let status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.kyberOneTimePreKeyCount == RelayLimits.maxStoredKyberOneTimePreKeys)
        try await relay.stop()
    }

    @Test func anIdentityUploadDropsTheKyberPreKeysOfTheOldIdentity() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let provisioning = Fixtures.identity()
        let account = Fixtures.identity()
        let existing = try await http.register(Fixtures.uniqueName("alice"))
        // A linked device claims with its provisioning key and Kyber prekeys signed by it, and is approved to
        // upload the account identity.
        let code = try await http.call(.POST, "/v1/devices/links", existing).decode(LinkCodeResponse.self)
        let claimKeys = Self.keys(identity: provisioning, lastResort: try Self.kyberPreKey(id: 5, signer: provisioning))
        let claim = try await http.call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: claimKeys))
        #expect(claim.status == 201)
        let linked = try claim.decode(DeviceCredentials.self)
        let approve = try await http.call(
            .POST, "/v1/devices/links/\(code.code)/approve", existing,
            body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(64), awaitIdentityUpload: true))
        #expect(approve.status == 204)
        // Kyber prekeys signed by the account identity are refused without the identity upload...
        let early = try await http.call(
            .PUT, "/v1/keys", linked, body: UploadPreKeysRequest(kyberLastResortPreKey: try Self.kyberPreKey(id: 7, signer: account)))
        #expect([400, 401].contains(early.status))
        // The identity upload drops the Kyber prekeys signed by the provisioning key...
        let upload = try await http.call(
            .PUT, "/v1/keys", linked,
            body: UploadPreKeysRequest(
                identityKey: Data(account.identityKey.serialized), signedPreKey: Fixtures.signedPreKey(id: 2, identity: account)))
        #expect(upload.status == 200)
        let status = try upload.decode(PreKeyStatusResponse.self)
        #expect(!status.hasKyberLastResortPreKey)
        #expect(status.kyberOneTimePreKeyCount == 0)
        var bundle = try await http.call(.GET, "/v1/keys/\(existing.account)/\(linked.deviceId)", existing)
            .decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.kyberPreKey == nil)
        // ...and the account identity's are accepted from then on.
        let fresh = try Self.kyberPreKey(id: 8, signer: account)
        #expect(try await http.call(.PUT, "/v1/keys", linked, body: UploadPreKeysRequest(kyberLastResortPreKey: fresh)).status == 200)
        bundle = try await http.call(.GET, "/v1/keys/\(existing.account)/\(linked.deviceId)", existing)
            .decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.kyberPreKey == fresh)
        try await relay.stop()
    }
}
