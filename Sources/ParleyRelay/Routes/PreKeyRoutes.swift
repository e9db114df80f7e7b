import Foundation
import Hummingbird
import ParleyCrypto
import ParleyWire

/// Prekey upload, status, bundle fetch (one account, or many in one batch).
///
/// Draining is bounded three ways (Specs/relay-protocol.md §5): each requesting device has a budget of device
/// bundles (`bundleFetchBurst`, `bundleFetchPerSecond`; a `*` or batched fetch pays per device it returns),
/// each target device hands out one-time prekeys at a bounded rate (`oneTimePreKeyHandoutBurst`,
/// `oneTimePreKeyHandoutsPerHour`; beyond it bundles come without one), and a device stores at most
/// `RelayLimits.maxStoredOneTimePreKeys`.
struct PreKeyRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.put("/v1/keys") { request, _ in
            // A pending device gets through only to upload its identity after an approved link (the store checks).
            let device = try await auth.authenticate(request.headers, allowPending: true)
            let body = try await HTTPSupport.decode(UploadPreKeysRequest.self, from: request, limit: RelayLimits.keyUploadBody)
            if let signed = body.signedPreKey { try InputValidation.checkFormat(signed) }
            try InputValidation.check(body.oneTimePreKeys)
            let kyberOneTime = body.kyberOneTimePreKeys ?? []
            try InputValidation.checkKyber(lastResort: body.kyberLastResortPreKey, oneTime: kyberOneTime)
            if let identityKey = body.identityKey { try Self.checkIdentityUpload(identityKey, signed: body.signedPreKey) }
            // Kyber prekeys are verified under the identity they are published with: the uploaded
            // one, or the device's; the store checks that the device's is still that one.
            var kyberSignedBy: Data? = nil
            if body.kyberLastResortPreKey != nil || !kyberOneTime.isEmpty {
                var signer = body.identityKey
                if signer == nil { signer = try await core.store.identityKey(device.address) }
                guard let identity = signer else { throw RelayError.unauthorized }
                try InputValidation.verifyKyber(lastResort: body.kyberLastResortPreKey, oneTime: kyberOneTime, identityKey: identity)
                kyberSignedBy = identity
            }
            let counts = try await core.store.storePreKeys(
                device.address, identityKey: body.identityKey, signed: body.signedPreKey, oneTime: body.oneTimePreKeys,
                kyberLastResort: body.kyberLastResortPreKey, kyberOneTime: kyberOneTime, kyberSignedBy: kyberSignedBy)
            return try HTTPSupport.json(Self.status(counts))
        }
        router.get("/v1/keys/status") { request, _ in
            let device = try await auth.authenticate(request.headers)
            return try HTTPSupport.json(Self.status(try await core.store.preKeyCounts(device.address)))
        }
        router.get("/v1/keys/:account/:device") { request, context in
            let requester = try await auth.authenticate(request.headers)
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
            let result = try await fetch([BundleRequest(account: account, deviceIds: deviceId.map { [$0] })], for: requester)
            guard let bundle = result.bundles.first else { throw RelayError.notFound("unknown account") }
            if bundle.devices.isEmpty { throw RelayError.notFound("unknown device") }
            return try HTTPSupport.json(bundle)
        }
        router.post("/v1/keys/bundles") { request, _ in
            let requester = try await auth.authenticate(request.headers)
            let body = try await HTTPSupport.decode(
                PreKeyBundleBatchRequest.self, from: request, limit: core.limits.bundleBatchBody)
            let requests = try Self.check(body, limits: core.limits)
            let result = try await fetch(requests, for: requester)
            return try HTTPSupport.json(
                PreKeyBundleBatchResponse(accounts: result.bundles, unknownAccounts: result.unknownAccounts))
        }
    }

    /// Takes the bundles, charging the requester one token per device bundle and each target device one
    /// hand-out token per one-time prekey.
    private func fetch(_ requests: [BundleRequest], for requester: AuthenticatedDevice) async throws -> BundleFetchResult {
        let budget = core.bundleLimiter
        let handouts = core.oneTimePreKeyLimiter
        let key = "\(requester.accountId).\(requester.deviceId)"
        return try await core.store.takePreKeyBundles(
            requests,
            charge: { count in
                guard count <= Int(budget.capacity) else {
                    throw RelayError.tooManyItems(
                        "at most \(Int(budget.capacity)) device bundles per request (this one has \(count))")
                }
                if let wait = budget.take(key, count: count) {
                    throw RelayError.rateLimitedFor(seconds: Int(wait.components.seconds) + 1)
                }
            },
            mayHandOut: { address in handouts.allow("\(address.accountId).\(address.deviceId)") })
    }

    /// A batch: 1...`maxBundleBatchAccounts` valid, distinct account names; device id lists non-empty and
    /// without duplicates.
    static func check(_ body: PreKeyBundleBatchRequest, limits: RelayLimits) throws -> [BundleRequest] {
        guard !body.accounts.isEmpty else { throw RelayError.invalidField("accounts must not be empty") }
        guard body.accounts.count <= limits.maxBundleBatchAccounts else {
            throw RelayError.tooManyItems("at most \(limits.maxBundleBatchAccounts) accounts per request")
        }
        var seen = Set<String>()
        return try body.accounts.map { target in
            try AccountName.validate(target.account)
            guard seen.insert(target.account).inserted else {
                throw RelayError.invalidField("account \(target.account) requested twice")
            }
            if let ids = target.deviceIds {
                guard !ids.isEmpty, Set(ids).count == ids.count else {
                    throw RelayError.invalidField("deviceIds of \(target.account) must be distinct and not empty")
                }
            }
            return BundleRequest(account: target.account, deviceIds: target.deviceIds)
        }
    }

    /// A new identity key must come with a signed prekey whose signature verifies under it (XEdDSA),
    /// so the relay never stores an identity key that its device cannot sign with.
    static func checkIdentityUpload(_ identityKey: Data, signed: SignedPreKey?) throws(RelayError) {
        let key = try InputValidation.publicKey(identityKey, "identityKey")
        guard let signed else { throw .invalidField("identityKey requires signedPreKey") }
        try InputValidation.check(signed, signedBy: key)
    }

    /// The low-prekey notice: refill when either one-time count is under the threshold or there
    /// is no last-resort Kyber prekey.
    static func status(_ counts: PreKeyCounts) -> PreKeyStatusResponse {
        PreKeyStatusResponse(
            oneTimePreKeyCount: counts.oneTime, kyberOneTimePreKeyCount: counts.kyberOneTime,
            hasKyberLastResortPreKey: counts.hasKyberLastResort,
            refillNeeded: counts.oneTime < RelayLimits.preKeyRefillThreshold
                || counts.kyberOneTime < RelayLimits.preKeyRefillThreshold || !counts.hasKyberLastResort)
    }
}
