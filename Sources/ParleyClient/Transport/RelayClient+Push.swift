import Foundation
import NIOHTTP1
import ParleyWire

/// The relay's push routes (relay-protocol.md §9). Errors come back as `PushError` where the answer means
/// something for push (a refused endpoint, no push routes, a rate limit); others as `RelayClientError`.
extension RelayClient {
    /// `GET /v1/push/vapid` (no authentication needed): the relay's VAPID key, checked (`VAPIDPublicKey`).
    public func vapidKey() async throws -> VAPIDPublicKey {
        let answer = try await Self.pushErrors { try await request(.GET, "/v1/push/vapid", as: VAPIDKeyResponse.self) }
        return try VAPIDPublicKey(base64URL: answer.publicKey)
    }

    /// `PUT /v1/push`: this device's endpoint (replaces an earlier one). The relay checks it against its
    /// policy: `PushError.endpointRefused` with its reason.
    public func registerPush(endpoint: String) async throws {
        let body = try WireCoding.encoder().encode(PushSubscriptionRequest(endpoint: endpoint))
        try await Self.pushErrors { try await performNoContent(.PUT, "/v1/push", body: body) }
    }

    /// `DELETE /v1/push`: no more pushes to this device (`204` whether or not it had an endpoint).
    public func unregisterPush() async throws {
        try await Self.pushErrors { try await performNoContent(.DELETE, "/v1/push", body: nil) }
    }

    private static func pushErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch RelayClientError.rejected(404, _, _) {
            throw PushError.pushUnavailable
        } catch RelayClientError.rejected(let status, let code, let message) where status == 400 || status == 413 {
            throw PushError.endpointRefused(code == .payloadTooLarge || status == 413 ? "the endpoint is too long" : message)
        } catch RelayClientError.rateLimited(let seconds, _) {
            throw PushError.rateLimited(retryAfterSeconds: seconds)
        }
    }
}
