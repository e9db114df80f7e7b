import Foundation

/// A signed prekey: public key bytes and the identity key's signature over them. Opaque to the relay.
public struct SignedPreKey: Codable, Sendable, Equatable {
    public var keyId: UInt32
    public var publicKey: Data
    public var signature: Data

    public init(keyId: UInt32, publicKey: Data, signature: Data) {
        self.keyId = keyId
        self.publicKey = publicKey
        self.signature = signature
    }
}

/// A one-time prekey. The relay hands each one out at most once.
public struct OneTimePreKey: Codable, Sendable, Equatable {
    public var keyId: UInt32
    public var publicKey: Data

    public init(keyId: UInt32, publicKey: Data) {
        self.keyId = keyId
        self.publicKey = publicKey
    }
}

/// A signed Kyber prekey (PQXDH): `0x08 || Kyber1024 public key` (1569 bytes) and the identity key's
/// XEdDSA signature over those 1569 bytes (64 bytes). The relay checks the encoding and the signature
/// on upload; it hands a one-time Kyber prekey out at most once, and a device's last-resort Kyber
/// prekey whenever no one-time one is left.
public struct KyberPreKey: Codable, Sendable, Equatable {
    public var keyId: UInt32
    public var publicKey: Data
    public var signature: Data

    public init(keyId: UInt32, publicKey: Data, signature: Data) {
        self.keyId = keyId
        self.publicKey = publicKey
        self.signature = signature
    }
}

/// `PUT /v1/keys`: replace the signed prekey and/or add one-time prekeys (at most 100 per request).
///
/// With `identityKey`, the device also replaces its public identity key (a linked device
/// publishing the account identity it received from the existing device). `signedPreKey` is then
/// required and must carry a valid signature by that identity key; the device's old one-time
/// prekeys are dropped (they belong to the old identity), and so are all its Kyber prekeys.
///
/// `kyberLastResortPreKey` replaces the device's last-resort Kyber prekey; `kyberOneTimePreKeys`
/// adds one-time Kyber prekeys (at most 100 per request; a key id already present is replaced).
/// Every Kyber prekey's signature must verify under the device's identity key (the uploaded one,
/// with `identityKey`).
public struct UploadPreKeysRequest: Codable, Sendable, Equatable {
    public var identityKey: Data?
    public var signedPreKey: SignedPreKey?
    public var oneTimePreKeys: [OneTimePreKey]
    public var kyberLastResortPreKey: KyberPreKey?
    public var kyberOneTimePreKeys: [KyberPreKey]?

    public init(
        identityKey: Data? = nil, signedPreKey: SignedPreKey? = nil, oneTimePreKeys: [OneTimePreKey] = [],
        kyberLastResortPreKey: KyberPreKey? = nil, kyberOneTimePreKeys: [KyberPreKey]? = nil
    ) {
        self.identityKey = identityKey
        self.signedPreKey = signedPreKey
        self.oneTimePreKeys = oneTimePreKeys
        self.kyberLastResortPreKey = kyberLastResortPreKey
        self.kyberOneTimePreKeys = kyberOneTimePreKeys
    }
}

/// Answer of `PUT /v1/keys` and `GET /v1/keys/status`: the low-prekey notice.
public struct PreKeyStatusResponse: Codable, Sendable, Equatable {
    /// One-time (EC) prekeys the relay still holds for the calling device.
    public var oneTimePreKeyCount: Int
    /// One-time Kyber prekeys the relay still holds for the calling device.
    public var kyberOneTimePreKeyCount: Int
    /// Whether the device has a last-resort Kyber prekey (without one, its bundles have no Kyber
    /// prekey once the one-time ones are gone, and initiators that require post-quantum sessions
    /// refuse them).
    public var hasKyberLastResortPreKey: Bool
    /// True when either one-time count is under the refill threshold (10), or there is no
    /// last-resort Kyber prekey: upload more.
    public var refillNeeded: Bool

    public init(oneTimePreKeyCount: Int, kyberOneTimePreKeyCount: Int, hasKyberLastResortPreKey: Bool, refillNeeded: Bool) {
        self.oneTimePreKeyCount = oneTimePreKeyCount
        self.kyberOneTimePreKeyCount = kyberOneTimePreKeyCount
        self.hasKyberLastResortPreKey = hasKyberLastResortPreKey
        self.refillNeeded = refillNeeded
    }
}

/// The prekey material of one device, as handed to a session initiator.
public struct DevicePreKeyBundle: Codable, Sendable, Equatable {
    public var deviceId: UInt32
    public var registrationId: UInt32
    public var identityKey: Data
    public var signedPreKey: SignedPreKey
    /// Absent when the device has no one-time prekeys left.
    public var oneTimePreKey: OneTimePreKey?
    /// A one-time Kyber prekey (handed out once) or, when none is left, the last-resort one;
    /// absent only for a device that never published one (the session would be X3DH).
    public var kyberPreKey: KyberPreKey?

    public init(
        deviceId: UInt32, registrationId: UInt32, identityKey: Data, signedPreKey: SignedPreKey,
        oneTimePreKey: OneTimePreKey?, kyberPreKey: KyberPreKey? = nil
    ) {
        self.deviceId = deviceId
        self.registrationId = registrationId
        self.identityKey = identityKey
        self.signedPreKey = signedPreKey
        self.oneTimePreKey = oneTimePreKey
        self.kyberPreKey = kyberPreKey
    }
}

/// Answer of `GET /v1/keys/{account}/{device|*}`.
public struct PreKeyBundleResponse: Codable, Sendable, Equatable {
    public var account: String
    public var devices: [DevicePreKeyBundle]

    public init(account: String, devices: [DevicePreKeyBundle]) {
        self.account = account
        self.devices = devices
    }
}

/// One account in a batched bundle fetch: all its active devices, or only `deviceIds`.
public struct BundleRequestTarget: Codable, Sendable, Equatable {
    public var account: String
    /// Absent: every active device of the account. Ids of devices that do not exist are skipped.
    public var deviceIds: [UInt32]?

    public init(account: String, deviceIds: [UInt32]? = nil) {
        self.account = account
        self.deviceIds = deviceIds
    }
}

/// `POST /v1/keys/bundles`: the prekey bundles of many accounts in one request (setting up sessions with the
/// members of a large group). At most as many accounts as a group has members (500 by default), each once.
public struct PreKeyBundleBatchRequest: Codable, Sendable, Equatable {
    public var accounts: [BundleRequestTarget]

    public init(accounts: [BundleRequestTarget]) {
        self.accounts = accounts
    }
}

/// Answer of `POST /v1/keys/bundles`: one entry per known requested account (request order), and the
/// requested accounts that do not exist.
public struct PreKeyBundleBatchResponse: Codable, Sendable, Equatable {
    public var accounts: [PreKeyBundleResponse]
    public var unknownAccounts: [String]

    public init(accounts: [PreKeyBundleResponse], unknownAccounts: [String]) {
        self.accounts = accounts
        self.unknownAccounts = unknownAccounts
    }
}
