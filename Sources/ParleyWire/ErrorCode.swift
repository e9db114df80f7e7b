/// Machine-readable error codes the relay returns in `ErrorResponse.code`
/// (HTTP bodies) and in WebSocket `error` frames.
public enum ErrorCode: String, Codable, Sendable, CaseIterable {
    /// The request body or frame is not valid JSON, misses fields or has wrong types.
    case malformedRequest
    /// A field is syntactically fine but its value is not allowed (bad name, empty list...).
    case invalidField
    /// The request or frame contains a field the relay does not know.
    case unknownField
    /// Missing or wrong credentials.
    case unauthorized
    /// Authenticated, but not allowed to touch this resource.
    case forbidden
    /// Account, device, group, link code or route does not exist.
    case notFound
    /// The account name is already registered.
    case nameTaken
    /// The account already has the maximum number of devices.
    case tooManyDevices
    /// The message does not address exactly the current device set (HTTP 409).
    case mismatchedDevices
    /// Some registration ids are out of date (HTTP 410).
    case staleDevices
    /// A ciphertext, body or frame exceeds its documented size limit.
    case payloadTooLarge
    /// Too many items in one request (e.g. more than 100 one-time prekeys).
    case tooManyItems
    /// A recipient device queue is full (count or bytes); nothing was stored.
    case queueFull
    /// Rate limit exceeded; retry later.
    case rateLimited
    /// The group is full.
    case groupFull
    /// Only a group admin may do this (add or remove others, make admins) (HTTP 403).
    case notAdmin
    /// The group changed since the version a group message names (`SendGroupMessageRequest.epoch`);
    /// nothing was stored (HTTP 409).
    case groupChanged
    /// The link code was already claimed, approved or has expired.
    case linkCodeUnavailable
    /// Account recovery refused: the recovery code is wrong, or the account has none (HTTP 403).
    case recoveryRefused
    /// Unexpected server failure. The request may be retried.
    case internalError
    /// The relay cannot reach its database right now (HTTP 503, `Retry-After`); nothing was stored. Retry later.
    case unavailable
}
