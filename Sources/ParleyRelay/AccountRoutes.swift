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
            _ = try await core.store.createAccount(
                name: body.name, device: body.device, credentialHash: Credentials.hash(token), now: RelayClock.nowMillis())
            core.logger.info("account registered", metadata: ["account": "\(body.name)"])
            return try HTTPSupport.json(DeviceCredentials(account: body.name, deviceId: 1, credential: token), status: .created)
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
