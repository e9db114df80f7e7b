import Crypto
import Foundation
import ParleyFormats

/// A Web Push subscription (W3C Push API, RFC 8030): the push service URL the relay POSTs to, and the keys a
/// sender would encrypt a payload with (RFC 8291: `p256dh`, the subscription's P-256 key, and `auth`, a
/// 16-byte secret).
///
/// The relay sends **content-free** pushes (an empty body: relay-protocol.md §9), so its API takes only the
/// endpoint: the keys are checked here (a subscription whose keys are malformed is a broken export, refused
/// before anything is sent) and then neither sent nor stored. On a desktop there is no push service of its own:
/// the subscription comes from elsewhere (a browser's `PushSubscription.toJSON()`, or a UnifiedPush
/// distributor), created with the relay's VAPID key as `applicationServerKey` (`parley push key`).
public struct WebPushSubscription: Sendable, Equatable {
    /// The relay's limit on an endpoint URL (relay-protocol.md §9).
    public static let maxEndpointBytes = 2_048
    /// The largest subscription JSON read: a 2,048-byte URL and two keys, with generous room for fields browsers
    /// may add; anything larger is not a subscription.
    public static let maxJSONBytes = 16 * 1024
    /// RFC 8291 §3.2: the authentication secret is 16 bytes.
    public static let authSecretLength = 16

    public let endpoint: String
    /// The subscription's uncompressed P-256 key (65 bytes), when given.
    public let p256dh: Data?
    /// The authentication secret (16 bytes), when given.
    public let auth: Data?

    /// Checks an endpoint and, if given, its keys (base64url, as browsers export them; both or neither).
    /// Only `http` and `https` URLs with a host and no user info are taken; whether `http` or a given host is
    /// acceptable is the relay's decision (its policy refuses `http` and non-public addresses by default).
    public init(endpoint: String, p256dh: String? = nil, auth: String? = nil) throws(PushError) {
        guard endpoint.utf8.count <= Self.maxEndpointBytes else {
            throw .invalidSubscription("the endpoint is longer than \(Self.maxEndpointBytes) bytes")
        }
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let host = url.host, !host.isEmpty
        else { throw .invalidSubscription("the endpoint must be an https:// URL with a host") }
        guard url.user == nil, url.password == nil else { throw .invalidSubscription("the endpoint must not carry user info") }
        switch (p256dh, auth) {
        case (nil, nil):
            self.p256dh = nil
            self.auth = nil
        case (let key?, let secret?):
            guard let keyBytes = Base64URL.decode(key) else { throw .invalidSubscription("p256dh is not base64url") }
            guard keyBytes.count == VAPIDPublicKey.rawLength, keyBytes.first == 0x04,
                (try? P256.KeyAgreement.PublicKey(x963Representation: keyBytes)) != nil
            else { throw .invalidSubscription("p256dh is not an uncompressed P-256 public key") }
            guard let secretBytes = Base64URL.decode(secret) else { throw .invalidSubscription("auth is not base64url") }
            guard secretBytes.count == Self.authSecretLength else {
                throw .invalidSubscription("auth is \(secretBytes.count) bytes, not \(Self.authSecretLength)")
            }
            self.p256dh = Data(keyBytes)
            self.auth = Data(secretBytes)
        default:
            throw .invalidSubscription("p256dh and auth go together: give both or neither")
        }
        self.endpoint = endpoint
    }

    /// A subscription as browsers export it (`JSON.stringify(subscription)`):
    /// `{"endpoint": "...", "expirationTime": null | <ms>, "keys": {"p256dh": "...", "auth": "..."}}`. Other
    /// members are ignored; an `expirationTime` in the past is refused (the push service no longer accepts it).
    public static func parse(json data: Data, now: Date = Date()) throws(PushError) -> WebPushSubscription {
        guard data.count <= maxJSONBytes else { throw .invalidSubscription("the file is larger than \(maxJSONBytes / 1024) KiB") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw .invalidSubscription("not a JSON object")
        }
        guard let endpoint = object["endpoint"] as? String else { throw .invalidSubscription("no \"endpoint\" string") }
        if let expiration = object["expirationTime"], !(expiration is NSNull) {
            guard let number = expiration as? NSNumber else {
                throw .invalidSubscription("\"expirationTime\" is neither null nor a number")
            }
            if number.doubleValue / 1000 <= now.timeIntervalSince1970 { throw .invalidSubscription("the subscription has expired") }
        }
        var p256dh: String?
        var auth: String?
        if let rawKeys = object["keys"] {
            guard let keys = rawKeys as? [String: Any], let key = keys["p256dh"] as? String, let secret = keys["auth"] as? String else {
                throw .invalidSubscription("\"keys\" must hold the strings \"p256dh\" and \"auth\"")
            }
            (p256dh, auth) = (key, secret)
        }
        return try WebPushSubscription(endpoint: endpoint, p256dh: p256dh, auth: auth)
    }

    /// The endpoint's host (what `parley push status` shows: the path identifies the subscription at its push
    /// service and is not printed).
    public var endpointHost: String { Self.host(of: endpoint) }

    static func host(of endpoint: String) -> String { URL(string: endpoint)?.host ?? "?" }
}
