/// Why linking a device failed. Each case says what the user or the caller can act on; none
/// carries key material or plaintext.
public enum LinkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The link string is not `parley-link:<code>:<key>` with a 22-character code and a 33-byte key.
    case malformedLinkString(String)
    /// The relay does not know the code, or it expired, was claimed by another device or was
    /// already approved.
    case codeUnavailable
    /// The account already has as many devices as the relay allows.
    case tooManyDevices
    /// Nothing happened within the time allowed (no claim, or no approval).
    case timedOut
    /// The claim read back from the relay is not the one this link expects (other code, no
    /// identity key, not in the `claimed` state).
    case unexpectedClaim(String)
    /// The provisioning blob did not authenticate: tampered with, or made for another code or key.
    case blobAuthenticationFailed
    /// The decrypted payload does not follow the format (`Specs/client-content.md` §Provisioning).
    case payloadMalformed(String)
    /// The payload's version is not one this client reads.
    case unsupportedPayloadVersion(UInt8)
    /// The payload would exceed the relay's blob limit even without any history.
    case payloadTooLarge(Int)
    /// A file already exists where the new device's store should be created.
    case storeExists(path: String)
    /// The relay refused a request (HTTP status, relay error code name, message).
    case relayRejected(status: Int, code: String?, message: String)
    /// A chunk of the history archive did not authenticate at its place (tampered with, reordered, from
    /// another link), or the whole archive's digest did not match (`chunk` = the chunk count). Nothing imported.
    case historyAuthenticationFailed(chunk: Int)
    /// The history archive ended before its last chunk (`chunk` chunks of `of` arrived). Nothing imported.
    case historyTruncated(chunk: Int, of: Int)
    /// The relay sent more history bytes than the provisioning payload announced. Nothing imported.
    case historyTooLong
    /// The payload announced a history archive the relay does not have (never uploaded, or already swept).
    case historyMissing
    /// The history archive (or its header) does not follow the format. Nothing imported.
    case historyMalformed(String)
    /// The approving device's history is larger than one archive may be (`limit` sealed bytes).
    case historyTooLarge(bytes: Int, limit: Int)

    public var description: String {
        switch self {
        case .malformedLinkString(let why): return "malformed link string: \(why)"
        case .codeUnavailable: return "the link code is unknown, expired or already used"
        case .tooManyDevices: return "the account has reached its device limit"
        case .timedOut: return "the link timed out"
        case .unexpectedClaim(let why): return "unexpected link claim: \(why)"
        case .blobAuthenticationFailed: return "the provisioning blob failed authentication"
        case .payloadMalformed(let why): return "malformed provisioning payload: \(why)"
        case .unsupportedPayloadVersion(let version): return "unsupported provisioning payload version \(version)"
        case .payloadTooLarge(let size): return "provisioning payload of \(size) bytes exceeds the blob limit"
        case .storeExists(let path): return "a store already exists at \(path)"
        case .relayRejected(let status, let code, let message):
            return "relay refused (\(status) \(code ?? "-")): \(message)"
        case .historyAuthenticationFailed(let chunk):
            return "the history archive failed verification at chunk \(chunk) (tampered with or reordered): nothing was imported"
        case .historyTruncated(let chunk, let total):
            return "the history archive was cut short (\(chunk) of \(total) chunks): nothing was imported"
        case .historyTooLong: return "the relay sent more history than the approving device announced: nothing was imported"
        case .historyMissing: return "the relay has no history archive for this link: nothing was imported"
        case .historyMalformed(let why): return "malformed history archive: \(why): nothing was imported"
        case .historyTooLarge(let bytes, let limit):
            return "the history (\(bytes) bytes) is larger than one archive may be (\(limit) bytes): nothing was sent"
        }
    }
}
