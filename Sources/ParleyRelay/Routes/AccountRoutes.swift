import Foundation
import Hummingbird
import ParleyWire

/// Registration, device listing and removal.
struct AccountRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.post("/v1/accounts") { request, _ in
            let body = try await HTTPSupport.decode(RegisterAccountRequest.self, from: request, limit: RelayLimits.registrationBody)
            try AccountName.validate(body.name)
            try InputValidation.check(body.device)
            let token = Credentials.newToken()
            let recoveryCode = RecoveryCode.generate()
            guard let normalized = RecoveryCode.normalize(recoveryCode) else { throw RelayError.internalError }
            let recoveryHash = RecoveryCode.hash(normalized)
            _ = try await core.store.createAccount(
                name: body.name, device: body.device, credentialHash: Credentials.hash(token), recoveryCodeHash: recoveryHash,
                now: RelayClock.nowMillis())
            core.logger.info("account registered", metadata: ["account": "\(body.name)"])
            return try HTTPSupport.json(
                DeviceCredentials(account: body.name, deviceId: 1, credential: token, recoveryCode: recoveryCode), status: .created)
        }
        router.post("/v1/accounts/recover") { request, _ in
            // Per source, the attempts are bounded by `FloodLimitMiddleware` (before this handler runs); per account,
            // in the store (the count is shared by every node and kept across restarts).
            let body = try await HTTPSupport.decode(RecoverAccountRequest.self, from: request, limit: RelayLimits.registrationBody)
            try AccountName.validate(body.name)
            try InputValidation.check(body.device)
            guard let code = RecoveryCode.normalize(body.recoveryCode) else {
                throw RelayError.invalidField("recoveryCode: 32 hexadecimal digits (dashes and spaces are ignored)")
            }
            let challenge = try await core.store.recoveryAttempt(
                name: body.name, now: RelayClock.nowMillis(), windowMillis: RelayLimits.recoveryWindowSeconds * 1000,
                maxAttempts: RelayLimits.recoveryAttemptsPerAccount)
            guard RecoveryCode.verify(code, against: challenge.codeHash) else {
                core.logger.notice("account recovery refused: wrong code", metadata: ["account": "\(body.name)"])
                throw RelayError.recoveryRefused("wrong recovery code")
            }
            let newCode = RecoveryCode.generate()
            guard let newNormalized = RecoveryCode.normalize(newCode) else { throw RelayError.internalError }
            let newHash = RecoveryCode.hash(newNormalized)
            let token = Credentials.newToken()
            let removed = try await core.store.recoverAccount(
                challenge, newCodeHash: newHash, device: body.device, credentialHash: Credentials.hash(token), now: RelayClock.nowMillis())
            // As a device removal: every old device's tickets and sessions end now (their credentials are gone).
            for deviceId in removed {
                await core.deviceRemoved(DeviceAddress(accountId: challenge.accountId, deviceId: deviceId), of: body.name)
            }
            core.logger.notice("account recovered", metadata: ["account": "\(body.name)", "removedDevices": "\(removed.count)"])
            return try HTTPSupport.json(DeviceCredentials(account: body.name, deviceId: 1, credential: token, recoveryCode: newCode))
        }
        router.get("/v1/devices") { request, _ in
            let device = try await auth.authenticate(request.headers)
            let devices = try await core.store.devices(account: device.account)
            return try HTTPSupport.json(DeviceListResponse(account: device.account, devices: devices))
        }
        router.get("/v1/accounts/:name/devices") { request, context in
            let requester = try await auth.authenticate(request.headers)
            guard let name = context.parameters.get("name") else { throw RelayError.notFound("unknown account") }
            var devices = try await core.store.devices(account: name)
            if name != requester.account {
                // Another account sees what starting a session needs: device ids and registration ids. Names,
                // creation and last-seen times are the account's own business.
                devices = devices.map {
                    DeviceInfo(deviceId: $0.deviceId, registrationId: $0.registrationId, name: nil, createdAt: nil, lastSeen: nil)
                }
            }
            return try HTTPSupport.json(DeviceListResponse(account: name, devices: devices))
        }
        router.delete("/v1/devices/:deviceId") { request, context in
            let device = try await auth.authenticate(request.headers)
            let target = try HTTPSupport.uint32Parameter(context, "deviceId")
            try await core.store.removeDevice(accountId: device.accountId, deviceId: target)
            await core.deviceRemoved(DeviceAddress(accountId: device.accountId, deviceId: target), of: device.account)
            core.logger.info("device removed", metadata: ["account": "\(device.account)", "device": "\(target)"])
            return HTTPSupport.noContent()
        }
    }
}
