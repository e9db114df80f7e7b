import ParleyWire

/// The most a route reads from a request body: bytes, and the longest array it accepts (checked while
/// parsing). Each route gets what it can legitimately need, so an unauthenticated client cannot make the relay
/// buffer or parse megabytes (Specs/relay-protocol.md §2 lists the values).
struct BodyLimit: Sendable, Equatable {
    let bytes: Int
    let maxArrayElements: Int

    var parse: JSONParseLimits { JSONParseLimits(maxArrayElements: maxArrayElements) }
}

extension RelayLimits {
    /// Characters of the base64 form of `count` bytes (with padding).
    static func base64Length(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    /// Room for a message's fields around its ciphertext (ids, type, timestamps, field names).
    static let ciphertextEnvelopeBytes = 1_024

    /// Registration and link claim (unauthenticated): keys and a signature (~300 bytes of JSON), a device name
    /// (64 bytes, up to 6 bytes each when `\u`-escaped) and at most 100 one-time prekeys of ~66 bytes each:
    /// under 8 KiB as compact JSON; twice that leaves room for whitespace. Plus one last-resort Kyber prekey
    /// (`kyberPreKeyJSONBytes`): 20,968 bytes. One-time Kyber prekeys go through the authenticated
    /// `PUT /v1/keys`, so an anonymous client still cannot make the relay read more than ~20 KiB.
    static let registrationBody = BodyLimit(
        bytes: 16 * 1024 + kyberPreKeyJSONBytes, maxArrayElements: maxOneTimePreKeysPerUpload)

    /// `PUT /v1/keys` (authenticated): what a registration may carry, plus at most 100 one-time Kyber prekeys of
    /// at most `kyberPreKeyJSONBytes` each: 479,368 bytes.
    static let keyUploadBody = BodyLimit(
        bytes: 16 * 1024 + (1 + maxKyberOneTimePreKeysPerUpload) * kyberPreKeyJSONBytes,
        maxArrayElements: max(maxOneTimePreKeysPerUpload, maxKyberOneTimePreKeysPerUpload))

    /// One signed Kyber prekey as JSON: a 1569-byte key and a 64-byte signature in base64, each `/` of which an
    /// encoder may escape (twice the base64 length), and its field names and id.
    static let kyberPreKeyJSONBytes = 2 * (base64Length(1_569) + base64Length(64)) + 128

    /// One-time Kyber prekeys stored per device: refused beyond (`tooManyItems`), as for EC prekeys (200 x 1.6 KB
    /// = 320 KB per device at most). The last-resort Kyber prekey is one more.
    static let maxStoredKyberOneTimePreKeys = 200

    /// One ciphertext or provisioning blob of at most 256 KiB in base64 (349,528 characters), each of which an
    /// encoder may escape (Foundation's JSONEncoder writes `/` as `\/`): twice that, and its fields.
    static let ciphertextBody = BodyLimit(bytes: escapedCiphertextBytes + ciphertextEnvelopeBytes, maxArrayElements: 0)

    /// A 256 KiB ciphertext in JSON: base64 with every `/` possibly escaped.
    static let escapedCiphertextBytes = 2 * base64Length(maxCiphertextBytes)

    /// `PUT /v1/push`: one endpoint URL of at most 2,048 bytes (an encoder may escape each `/` as `\/`).
    static let pushSubscriptionBody = BodyLimit(bytes: 2 * maxPushEndpointBytes + 1_024, maxArrayElements: 0)

    /// Account names in a request: at most 32 characters, quoted, with a separator; `\u`-escaping (legal but
    /// pointless) takes up to 6 bytes per character, so 64 bytes each is generous for compact clients.
    static let bytesPerAccountName = 64

    /// A 1:1 send: one ciphertext per device of the recipient and per other device of the sender, at most
    /// `2 x maxDevicesPerAccount - 1` (7.3 MiB at the default of 6), never above `maxRequestBodyBytes`.
    var directMessageBody: BodyLimit {
        let copies = 2 * maxDevicesPerAccount - 1
        let bytes = copies * (Self.escapedCiphertextBytes + Self.ciphertextEnvelopeBytes)
        return BodyLimit(bytes: min(bytes, Self.maxRequestBodyBytes), maxArrayElements: maxDevicesPerAccount)
    }

    /// Group creation and membership changes: at most `maxGroupMembers` names (32 KiB at the default of 500).
    var groupMembersBody: BodyLimit {
        BodyLimit(
            bytes: min(maxGroupMembers * Self.bytesPerAccountName + 1_024, Self.maxRequestBodyBytes),
            maxArrayElements: maxGroupMembers)
    }

    /// The batched bundle fetch: at most `maxBundleBatchAccounts` accounts, each with an optional list of device
    /// ids (11 bytes each at most), 80 KiB at the defaults.
    var bundleBatchBody: BodyLimit {
        let perAccount = Self.bytesPerAccountName + 32 + 11 * maxDevicesPerAccount
        return BodyLimit(
            bytes: min(maxBundleBatchAccounts * perAccount + 1_024, Self.maxRequestBodyBytes),
            maxArrayElements: max(maxBundleBatchAccounts, maxDevicesPerAccount))
    }

    /// One-time prekeys stored per device: refused beyond (`tooManyItems`). A client refills when fewer than 10
    /// remain, 100 at a time, so it holds at most ~110; 200 leaves room and bounds what a device can park.
    static let maxStoredOneTimePreKeys = 200

    /// Accounts in one batched bundle fetch (`POST /v1/keys/bundles`): one group's worth.
    var maxBundleBatchAccounts: Int { maxGroupMembers }
}
