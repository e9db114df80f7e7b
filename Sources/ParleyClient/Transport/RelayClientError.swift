import ParleyWire

/// What the relay answered when a request did not succeed, typed so that the client can act.
public enum RelayClientError: Error, Equatable, Sendable {
    /// 409: the message did not cover exactly the current devices.
    case mismatchedDevices(account: String?, missing: [UInt32], extra: [UInt32])
    /// 410: these devices were reinstalled (their registration id changed).
    case staleDevices(account: String?, stale: [UInt32])
    /// 429: the relay rate-limits this client and asked it to wait `retryAfterSeconds` (its `Retry-After`)
    /// longer than the client's bounded wait (`RelayClient.RateLimitPolicy`). The relay is reachable; the
    /// request was not carried out. Nothing is lost: an outbox entry stays queued.
    case rateLimited(retryAfterSeconds: Int, message: String)
    /// 401 to a request made with this device's credential: the relay no longer accepts it. A credential the
    /// relay issued stops working only when its device is removed from the account (`DELETE /v1/devices/{id}`,
    /// by any device of the account, itself included) or, for a linked device, when its link was never
    /// finished: either way this device is no longer part of the account.
    case deviceRemoved
    /// Any other error answer: its HTTP status and the relay's error code and message.
    case rejected(status: Int, code: ErrorCode?, message: String)
    /// The answer could not be decoded.
    case badResponse(String)
}
