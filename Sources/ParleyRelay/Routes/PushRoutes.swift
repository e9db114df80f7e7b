import Foundation
import Hummingbird
import ParleyWire

/// Push endpoint registration and the VAPID public key.
struct PushRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.get("/v1/push/vapid") { _, _ in
            try HTTPSupport.json(VAPIDKeyResponse(publicKey: core.vapid.publicKeyBase64URL))
        }
        router.put("/v1/push") { request, _ in
            let device = try await auth.authenticate(request.headers)
            let body = try await HTTPSupport.decode(
                PushSubscriptionRequest.self, from: request, limit: RelayLimits.pushSubscriptionBody)
            _ = try await core.pushPolicy.check(body.endpoint)
            try await core.store.setPushEndpoint(device.address, endpoint: body.endpoint, now: RelayClock.nowMillis())
            return HTTPSupport.noContent()
        }
        router.delete("/v1/push") { request, _ in
            let device = try await auth.authenticate(request.headers)
            try await core.store.removePushEndpoint(device.address, ifEndpoint: nil)
            return HTTPSupport.noContent()
        }
    }
}
