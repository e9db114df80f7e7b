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

/// `PUT /v1/keys`: replace the signed prekey and/or add one-time prekeys (at most 100 per request).
///
/// With `identityKey`, the device also replaces its public identity key (a linked device
/// publishing the account identity it received from the existing device). `signedPreKey` is then
/// required and must carry a valid signature by that identity key; the device's old one-time
/// prekeys are dropped (they belong to the old identity).
public struct UploadPreKeysRequest: Codable, Sendable, Equatable {
    public var identityKey: Data?
    public var signedPreKey: SignedPreKey?
    public var oneTimePreKeys: [OneTimePreKey]

    public init(identityKey: Data? = nil, signedPreKey: SignedPreKey? = nil, oneTimePreKeys: [OneTimePreKey] = []) {
        self.identityKey = identityKey
        self.signedPreKey = signedPreKey
        self.oneTimePreKeys = oneTimePreKeys
    }
}

/// Answer of `PUT /v1/keys` and `GET /v1/keys/status`.
public struct PreKeyStatusResponse: Codable, Sendable, Equatable {
    /// One-time prekeys the relay still holds for the calling device.
    public var oneTimePreKeyCount: Int
    /// True when `oneTimePreKeyCount` is under the refill threshold (10): upload more.
    public var refillNeeded: Bool

    public init(oneTimePreKeyCount: Int, refillNeeded: Bool) {
        self.oneTimePreKeyCount = oneTimePreKeyCount
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

    public init(
        deviceId: UInt32, registrationId: UInt32, identityKey: Data, signedPreKey: SignedPreKey,
        oneTimePreKey: OneTimePreKey?
    ) {
        self.deviceId = deviceId
        self.registrationId = registrationId
        self.identityKey = identityKey
        self.signedPreKey = signedPreKey
        self.oneTimePreKey = oneTimePreKey
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
