import ParleyWire

/// What the relay answered when a request did not succeed, typed so that the client can act.
public enum RelayClientError: Error, Equatable, Sendable {
    /// 409: the message did not cover exactly the current devices.
    case mismatchedDevices(account: String?, missing: [UInt32], extra: [UInt32])
    /// 410: these devices were reinstalled (their registration id changed).
    case staleDevices(account: String?, stale: [UInt32])
    /// Any other error answer: its HTTP status and the relay's error code and message.
    case rejected(status: Int, code: ErrorCode?, message: String)
    /// The answer could not be decoded.
    case badResponse(String)
}
