import Foundation
import Hummingbird
import ParleyWire

/// Every failure the relay reports to a client. Maps to an HTTP status and an `ErrorResponse` body.
public enum RelayError: Error, Sendable, Equatable {
    case malformedRequest(String)
    case invalidField(String)
    case unknownField(String)
    case unauthorized
    case forbidden(String)
    case notFound(String)
    case nameTaken
    case tooManyDevices
    case mismatchedDevices(account: String, missing: [UInt32], extra: [UInt32])
    case staleDevices(account: String, stale: [UInt32])
    case payloadTooLarge(String)
    case tooManyItems(String)
    case queueFull(account: String, deviceId: UInt32)
    case rateLimited
    case groupFull
    /// A group change only admins may make (message says which).
    case notAdmin(String)
    /// A group message named a group version that is no longer current.
    case groupChanged(current: Int64)
    case linkCodeUnavailable
    case internalError
    /// The sender's share of a recipient device's queue is used up (`queueFull`, 507): other senders still
    /// reach the device; this one can once the device drained some of its entries.
    case queueShareFull(account: String, deviceId: UInt32)
    /// Rate limited (`rateLimited`, 429) with the number of seconds after which the same request can pass.
    case rateLimitedFor(seconds: Int)
    /// The database cannot be reached (PostgreSQL down or restarting); nothing was stored.
    case unavailable
    /// Account recovery refused (`recoveryRefused`, 403): a wrong recovery code, or an account without one.
    case recoveryRefused(String)

    public var status: HTTPResponse.Status {
        switch self {
        case .malformedRequest, .invalidField, .unknownField, .tooManyItems: .badRequest
        case .unauthorized: .unauthorized
        case .forbidden, .notAdmin, .recoveryRefused: .forbidden
        case .notFound: .notFound
        case .nameTaken, .tooManyDevices, .mismatchedDevices, .groupFull, .linkCodeUnavailable, .groupChanged: .conflict
        case .staleDevices: .gone
        case .payloadTooLarge: .contentTooLarge
        case .queueFull, .queueShareFull: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
        case .rateLimited, .rateLimitedFor: .tooManyRequests
        case .internalError: .internalServerError
        case .unavailable: .serviceUnavailable
        }
    }

    public var body: ErrorResponse {
        switch self {
        case .malformedRequest(let m): ErrorResponse(code: .malformedRequest, message: m)
        case .invalidField(let m): ErrorResponse(code: .invalidField, message: m)
        case .unknownField(let m): ErrorResponse(code: .unknownField, message: m)
        case .unauthorized: ErrorResponse(code: .unauthorized, message: "missing or invalid credentials")
        case .forbidden(let m): ErrorResponse(code: .forbidden, message: m)
        case .notFound(let m): ErrorResponse(code: .notFound, message: m)
        case .nameTaken: ErrorResponse(code: .nameTaken, message: "account name already registered")
        case .tooManyDevices: ErrorResponse(code: .tooManyDevices, message: "device limit reached")
        case .mismatchedDevices(let account, let missing, let extra):
            ErrorResponse(
                code: .mismatchedDevices, message: "device list mismatch", missingDevices: missing,
                extraDevices: extra, account: account)
        case .staleDevices(let account, let stale):
            ErrorResponse(code: .staleDevices, message: "stale registration ids", staleDevices: stale, account: account)
        case .payloadTooLarge(let m): ErrorResponse(code: .payloadTooLarge, message: m)
        case .tooManyItems(let m): ErrorResponse(code: .tooManyItems, message: m)
        case .queueFull(let account, let deviceId):
            ErrorResponse(code: .queueFull, message: "queue of device \(deviceId) is full", account: account)
        case .rateLimited: ErrorResponse(code: .rateLimited, message: "rate limit exceeded")
        case .groupFull: ErrorResponse(code: .groupFull, message: "group member limit reached")
        case .notAdmin(let m): ErrorResponse(code: .notAdmin, message: m)
        case .groupChanged(let current): ErrorResponse(code: .groupChanged, message: "the group changed: its version is now \(current)")
        case .linkCodeUnavailable: ErrorResponse(code: .linkCodeUnavailable, message: "link code unavailable")
        case .internalError: ErrorResponse(code: .internalError, message: "internal error")
        case .queueShareFull(let account, let deviceId):
            ErrorResponse(
                code: .queueFull, message: "your share of the queue of device \(deviceId) is full", account: account)
        case .rateLimitedFor(let seconds):
            ErrorResponse(code: .rateLimited, message: "rate limit exceeded; retry in \(seconds) s")
        case .unavailable: ErrorResponse(code: .unavailable, message: "database unavailable, retry later")
        case .recoveryRefused(let m): ErrorResponse(code: .recoveryRefused, message: m)
        }
    }
}

extension RelayError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if case .unauthorized = self {
            headers[.wwwAuthenticate] = "Basic realm=\"parley-relay\""
        }
        if self == .rateLimited || self == .unavailable {
            headers[.retryAfter] = "1"
        }
        if case .rateLimitedFor(let seconds) = self {
            headers[.retryAfter] = "\(max(1, seconds))"
        }
        let data = (try? WireCoding.encoder().encode(body)) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
