/// Why registering this device for Web Push (or checking the relay's push key) did not happen. Nothing was
/// changed in the store or at the relay when one of these is thrown.
public enum PushError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The subscription given (endpoint, keys, or the JSON file) is not usable; `reason` says what is wrong.
    case invalidSubscription(String)
    /// The relay refused the endpoint under its policy (relay-protocol.md §9: `https` to a public address,
    /// at most 2,048 bytes); `reason` is the relay's message ("endpoint host is not a public address").
    case endpointRefused(String)
    /// The relay has no push routes (`404`): an older or differently built relay.
    case pushUnavailable
    /// The relay rate-limited the request beyond the client's bounded wait.
    case rateLimited(retryAfterSeconds: Int)
    /// The relay's VAPID key (`GET /v1/push/vapid`) is not an uncompressed P-256 point in base64url.
    case invalidVAPIDKey(String)
    /// The relay's VAPID key is not the one this device registered under (both base64url). A subscription is
    /// bound to the application server key it was created with: the push service rejects pushes signed with
    /// another one. The user must create a new subscription for the new key and register it again, accepting
    /// the new key explicitly (`parley push register --accept-new-relay-key`).
    case vapidKeyChanged(pinned: String, current: String)

    public var description: String {
        switch self {
        case .invalidSubscription(let reason): return "not a usable push subscription: \(reason)"
        case .endpointRefused(let reason): return "the relay refused the push endpoint: \(reason)"
        case .pushUnavailable: return "the relay does not offer push notifications (no /v1/push routes)"
        case .rateLimited(let seconds): return "rate limited by the relay; try again in \(seconds) s"
        case .invalidVAPIDKey(let reason): return "the relay's push (VAPID) key is not valid: \(reason)"
        case .vapidKeyChanged(let pinned, let current):
            return "the relay's push (VAPID) key changed (was \(VAPIDPublicKey.fingerprint(base64URL: pinned)), now "
                + "\(VAPIDPublicKey.fingerprint(base64URL: current))): the registered subscription no longer works; create a new "
                + "subscription with the new key (`parley push key`) and register it with --accept-new-relay-key"
        }
    }
}
