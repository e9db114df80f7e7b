import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire
import Testing
@testable import ParleyRelay

/// `PUT /v1/keys` with `identityKey`: a linked device publishes the account identity it got from
/// the existing device. The relay checks the signed prekey's signature against the new key, and a
/// device approved with `awaitIdentityUpload` stays invisible (no listing, no bundle, no fan-out)
/// until that upload.
@Suite("Identity key upload", .timeLimit(.minutes(3)))
struct IdentityUploadTests {
    /// Real key material: an identity, a signed prekey signed by it, one-time prekeys.
    struct RealKeys {
        let identity: IdentityKeyPair
        let signed: SignedPreKey
        let oneTime: [OneTimePreKey]

        init(signedId: UInt32 = 1, firstOneTimeId: UInt32 = 1, oneTimeCount: Int = 3) throws {
            identity = try IdentityKeyPair.generate()
            let record = try SignedPreKeyRecord.generate(id: signedId, identity: identity, timestamp: 0)
            signed = SignedPreKey(
                keyId: record.id, publicKey: Data(record.keyPair.publicKey.serialized), signature: Data(record.signature))
            oneTime = try (0..<oneTimeCount).map { offset in
                OneTimePreKey(
                    keyId: firstOneTimeId + UInt32(offset),
                    publicKey: Data(try PrivateKey.generate(using: SystemRandom.shared).publicKey.serialized))
            }
        }

        var identityKey: Data { Data(identity.identityKey.serialized) }

        func device(registrationId: UInt32) -> NewDeviceKeys {
            NewDeviceKeys(registrationId: registrationId, identityKey: identityKey, signedPreKey: signed, oneTimePreKeys: oneTime)
        }

        func upload(identity: Bool = true) -> UploadPreKeysRequest {
            UploadPreKeysRequest(identityKey: identity ? identityKey : nil, signedPreKey: signed, oneTimePreKeys: oneTime)
        }
    }

    @Test func linkedDeviceStaysHiddenUntilItUploadsItsIdentity() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let account = try RealKeys()
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: account.device(registrationId: 11))
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        // The new device claims with a provisioning key, the existing one approves awaiting the upload.
        let provisioning = try RealKeys(oneTimeCount: 5)
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let claim = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: provisioning.device(registrationId: 22)))
        let second = try claim.decode(DeviceCredentials.self)
        // Claimed, not approved: no upload, not even with an identity.
        let early = try RealKeys(signedId: 2, firstOneTimeId: 100)
        #expect(try await http.call(.PUT, "/v1/keys", second, body: early.upload()).status == 401)

        let approve = try await http.call(
            .POST, "/v1/devices/links/\(code.code)/approve", alice,
            body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(64), awaitIdentityUpload: true))
        #expect(approve.status == 204)
        let status = try await http.call(.GET, "/v1/devices/links/status", second).decode(LinkStatusResponse.self)
        #expect(status.state == .approved)

        // Approved but not uploaded: not listed, no bundle (the provisioning key is never handed out),
        // not addressable, and no other API.
        #expect(try await http.devices(of: alice.account, bob).map(\.deviceId) == [1])
        #expect(try await http.call(.GET, "/v1/keys/\(alice.account)/2", bob).status == 404)
        let all = try await http.call(.GET, "/v1/keys/\(alice.account)/*", bob).decode(PreKeyBundleResponse.self)
        #expect(all.devices.map(\.deviceId) == [1])
        #expect(all.devices.allSatisfy { $0.identityKey != provisioning.identityKey })
        #expect(try await http.call(.GET, "/v1/devices", second).status == 401)

        // A pending device's upload without identity is refused; so is an identity whose
        // signature does not verify, and an identity without a signed prekey.
        #expect(try await http.call(.PUT, "/v1/keys", second, body: account.upload(identity: false)).status == 401)
        var forged = UploadPreKeysRequest(identityKey: account.identityKey, signedPreKey: provisioning.signed, oneTimePreKeys: [])
        let refused = try await http.call(.PUT, "/v1/keys", second, body: forged)
        #expect(refused.status == 400)
        #expect(refused.error?.code == .invalidField)
        forged.signedPreKey = nil
        #expect(try await http.call(.PUT, "/v1/keys", second, body: forged).status == 400)
        var garbage = account.upload()
        garbage.identityKey = Fixtures.bytes(33)
        #expect(try await http.call(.PUT, "/v1/keys", second, body: garbage).status == 400)

        // The account identity (signed prekey made by the new device with the account identity).
        let real = try RealKeys(signedId: 7, firstOneTimeId: 500, oneTimeCount: 4)
        let shared = try SignedPreKeyRecord.generate(id: 8, identity: account.identity, timestamp: 0)
        let upload = UploadPreKeysRequest(
            identityKey: account.identityKey,
            signedPreKey: SignedPreKey(keyId: 8, publicKey: Data(shared.keyPair.publicKey.serialized), signature: Data(shared.signature)),
            oneTimePreKeys: real.oneTime)
        let uploaded = try await http.call(.PUT, "/v1/keys", second, body: upload)
        #expect(uploaded.status == 200)
        // The claim's one-time prekeys (made for the provisioning key) are gone.
        #expect(try uploaded.decode(PreKeyStatusResponse.self).oneTimePreKeyCount == 4)

        #expect(try await http.devices(of: alice.account, bob).map(\.deviceId) == [1, 2])
        let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/2", bob).decode(PreKeyBundleResponse.self)
        let device = try #require(bundle.devices.first)
        #expect(device.identityKey == account.identityKey)
        #expect(device.registrationId == 22)
        #expect(device.signedPreKey.keyId == 8)
        #expect(device.oneTimePreKey?.keyId == 500)
        let identity = try PublicKey(serialized: Array(device.identityKey))
        #expect(XEdDSA.verify(Array(device.signedPreKey.signature), of: Array(device.signedPreKey.publicKey), by: identity))
        #expect(try await http.call(.GET, "/v1/devices", second).status == 200)
        try await relay.stop()
    }

    @Test func activeDeviceMayReplaceItsIdentityWithAValidSignature() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let first = try RealKeys()
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: first.device(registrationId: 5))
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        // An upload without identity leaves the identity alone.
        let plain = UploadPreKeysRequest(signedPreKey: nil, oneTimePreKeys: [])
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: plain).status == 200)

        let next = try RealKeys(signedId: 2, firstOneTimeId: 50)
        var wrong = next.upload()
        wrong.signedPreKey = first.signed  // signed by the old identity
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: wrong).status == 400)
        let stillOld = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(stillOld.devices.first?.identityKey == first.identityKey)

        #expect(try await http.call(.PUT, "/v1/keys", alice, body: next.upload()).status == 200)
        let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.identityKey == next.identityKey)
        #expect(bundle.devices.first?.oneTimePreKey?.keyId == 50)
        try await relay.stop()
    }

    @Test func approvedDeviceThatNeverUploadsIsSweptWithItsCode() async throws {
        // (The default 10-minute code lifetime: the sweep below runs with a clock 25 hours ahead.)
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let claim = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: try RealKeys().device(registrationId: 9)))
        let second = try claim.decode(DeviceCredentials.self)
        #expect(try await http.call(
            .POST, "/v1/devices/links/\(code.code)/approve", alice,
            body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(8), awaitIdentityUpload: true)).status == 204)
        // A day after the code's expiry, the still-pending device goes with its code.
        _ = try await relay.running.core.store.deleteExpired(now: RelayClock.nowMillis() + 25 * 3600 * 1000)
        #expect(try await http.call(.GET, "/v1/devices/links/status", second).status == 401)
        try await relay.stop()
    }
}
