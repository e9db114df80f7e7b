import Foundation
import Hummingbird
import ParleyCrypto
import ParleyWire

/// Prekey upload, status and bundle fetch.
struct PreKeyRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.put("/v1/keys") { request, _ in
            // A pending device gets through only to upload its identity after an approved link (the store checks).
            let device = try await auth.authenticate(request.headers, allowPending: true)
            let body = try await HTTPSupport.decode(UploadPreKeysRequest.self, from: request)
            if let signed = body.signedPreKey { try InputValidation.check(signed) }
            try InputValidation.check(body.oneTimePreKeys)
            if let identityKey = body.identityKey { try Self.checkIdentityUpload(identityKey, signed: body.signedPreKey) }
            let count = try await core.store.storePreKeys(
                device.address, identityKey: body.identityKey, signed: body.signedPreKey, oneTime: body.oneTimePreKeys)
            return try HTTPSupport.json(Self.status(count))
        }
        router.get("/v1/keys/status") { request, _ in
            let device = try await auth.authenticate(request.headers)
            return try HTTPSupport.json(Self.status(try await core.store.oneTimePreKeyCount(device.address)))
        }
        router.get("/v1/keys/:account/:device") { request, context in
            let requester = try await auth.authenticate(request.headers)
            guard await core.bundleLimiter.allow("\(requester.account).\(requester.deviceId)") else {
                throw RelayError.rateLimited
            }
            guard let account = context.parameters.get("account"), let deviceText = context.parameters.get("device")
            else { throw RelayError.notFound("unknown account") }
            let deviceId: UInt32?
            if deviceText == "*" {
                deviceId = nil
            } else if let id = UInt32(deviceText) {
                deviceId = id
            } else {
                throw RelayError.invalidField("device must be a device id or *")
            }
            let bundles = try await core.store.takePreKeyBundles(account: account, deviceId: deviceId)
            return try HTTPSupport.json(PreKeyBundleResponse(account: account, devices: bundles))
        }
    }

    /// A new identity key must come with a signed prekey whose signature verifies under it (XEdDSA),
    /// so the relay never stores an identity key that its device cannot sign with.
    static func checkIdentityUpload(_ identityKey: Data, signed: SignedPreKey?) throws(RelayError) {
        try InputValidation.checkKey(identityKey, "identityKey")
        guard let signed else { throw .invalidField("identityKey requires signedPreKey") }
        guard let key = try? ParleyCrypto.PublicKey(serialized: Array(identityKey)) else {
            throw .invalidField("identityKey is not a Curve25519 public key")
        }
        guard XEdDSA.verify(Array(signed.signature), of: Array(signed.publicKey), by: key) else {
            throw .invalidField("signedPreKey.signature does not verify under identityKey")
        }
    }

    static func status(_ count: Int) -> PreKeyStatusResponse {
        PreKeyStatusResponse(oneTimePreKeyCount: count, refillNeeded: count < RelayLimits.preKeyRefillThreshold)
    }
}
