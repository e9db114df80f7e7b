import Foundation
import Hummingbird
import ParleyWire

/// Linking a new device: code created by an existing device, claimed by the new one, approved by the existing one.
struct LinkRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.post("/v1/devices/links") { request, _ in
            let device = try await auth.authenticate(request.headers)
            let now = RelayClock.nowMillis()
            let code = Credentials.randomBase64URL(byteCount: 16)
            let expiresAt = now + core.limits.linkCodeTTLSeconds * 1000
            try await core.store.createLinkCode(device.address, code: code, now: now, expiresAt: expiresAt)
            return try HTTPSupport.json(LinkCodeResponse(code: code, expiresAt: expiresAt), status: .created)
        }
        router.post("/v1/devices/links/claim") { request, _ in
            let body = try await HTTPSupport.decode(ClaimLinkRequest.self, from: request, limit: RelayLimits.registrationBody)
            try InputValidation.check(body.device)
            let token = Credentials.newToken()
            let (account, deviceId) = try await core.store.claimLinkCode(
                code: body.code, device: body.device, credentialHash: Credentials.hash(token),
                now: RelayClock.nowMillis(), maxDevices: core.limits.maxDevicesPerAccount)
            core.logger.info("link code claimed", metadata: ["account": "\(account)", "device": "\(deviceId)"])
            return try HTTPSupport.json(
                DeviceCredentials(account: account, deviceId: deviceId, credential: token), status: .created)
        }
        router.get("/v1/devices/links/status") { request, _ in
            let device = try await auth.authenticate(request.headers, allowPending: true)
            return try HTTPSupport.json(try await core.store.linkStatus(device.address))
        }
        router.get("/v1/devices/links/:code") { request, context in
            let device = try await auth.authenticate(request.headers)
            guard let code = context.parameters.get("code") else { throw RelayError.notFound("unknown link code") }
            return try HTTPSupport.json(
                try await core.store.linkInfo(accountId: device.accountId, code: code, now: RelayClock.nowMillis()))
        }
        router.post("/v1/devices/links/:code/approve") { request, context in
            let device = try await auth.authenticate(request.headers)
            guard let code = context.parameters.get("code") else { throw RelayError.notFound("unknown link code") }
            let body = try await HTTPSupport.decode(ApproveLinkRequest.self, from: request, limit: RelayLimits.ciphertextBody)
            guard body.provisioningBlob.count <= RelayLimits.maxCiphertextBytes else {
                throw RelayError.payloadTooLarge("provisioning blob larger than \(RelayLimits.maxCiphertextBytes) bytes")
            }
            try await core.store.approveLink(
                accountId: device.accountId, code: code, provisioningBlob: body.provisioningBlob,
                awaitIdentityUpload: body.awaitIdentityUpload ?? false, now: RelayClock.nowMillis())
            core.logger.info("device link approved", metadata: ["account": "\(device.account)"])
            return HTTPSupport.noContent()
        }
    }
}
