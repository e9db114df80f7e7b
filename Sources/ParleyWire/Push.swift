/// `PUT /v1/push`: the Web Push (RFC 8030) endpoint of the calling device. The relay sends content-free
/// pushes to it (empty body) while the device is offline and has new envelopes.
public struct PushSubscriptionRequest: Codable, Sendable, Equatable {
    /// Push service URL from the browser/OS push subscription (https; max 2048 bytes).
    public var endpoint: String

    public init(endpoint: String) {
        self.endpoint = endpoint
    }
}

/// Answer of `GET /v1/push/vapid`: the relay's VAPID (RFC 8292) application server key.
public struct VAPIDKeyResponse: Codable, Sendable, Equatable {
    /// Uncompressed P-256 public key (65 bytes), base64url without padding, as used for `applicationServerKey`.
    public var publicKey: String

    public init(publicKey: String) {
        self.publicKey = publicKey
    }
}
