import Foundation

/// Key material a device publishes when it registers or is linked.
public struct NewDeviceKeys: Codable, Sendable, Equatable {
    /// Signal registration id of the device (opaque to the relay, used for stale-device checks).
    public var registrationId: UInt32
    /// Public identity key bytes.
    public var identityKey: Data
    public var signedPreKey: SignedPreKey
    /// Initial one-time prekeys (at most 100).
    public var oneTimePreKeys: [OneTimePreKey]
    /// Optional human-readable device name (max 64 bytes UTF-8). Not secret from the relay: clients may encrypt it.
    public var name: String?
    /// The device's last-resort Kyber prekey (PQXDH); optional, so that a client without Kyber can
    /// still register (its sessions are X3DH, which post-quantum initiators refuse). One-time Kyber
    /// prekeys are uploaded after registration with `PUT /v1/keys` (they do not fit the bound of an
    /// unauthenticated request body).
    public var kyberLastResortPreKey: KyberPreKey?

    public init(
        registrationId: UInt32, identityKey: Data, signedPreKey: SignedPreKey, oneTimePreKeys: [OneTimePreKey],
        name: String? = nil, kyberLastResortPreKey: KyberPreKey? = nil
    ) {
        self.registrationId = registrationId
        self.identityKey = identityKey
        self.signedPreKey = signedPreKey
        self.oneTimePreKeys = oneTimePreKeys
        self.name = name
        self.kyberLastResortPreKey = kyberLastResortPreKey
    }
}

/// `POST /v1/accounts`: create an account together with its first device (device id 1).
public struct RegisterAccountRequest: Codable, Sendable, Equatable {
    public var name: String
    public var device: NewDeviceKeys

    public init(name: String, device: NewDeviceKeys) {
        self.name = name
        self.device = device
    }
}

/// `POST /v1/accounts/recover`: re-register an account whose devices are all lost, with its
/// recovery code. Every existing device of the account is removed (credentials, sessions, queues)
/// and `device` becomes its device 1; the answer carries a new recovery code.
public struct RecoverAccountRequest: Codable, Sendable, Equatable {
    public var name: String
    /// The recovery code shown at registration (or at the last recovery): 32 hexadecimal digits;
    /// dashes and spaces are ignored, letters may be either case.
    public var recoveryCode: String
    public var device: NewDeviceKeys

    public init(name: String, recoveryCode: String, device: NewDeviceKeys) {
        self.name = name
        self.recoveryCode = recoveryCode
        self.device = device
    }
}

/// The credentials of a device. `credential` is shown only once; the relay keeps only its hash.
public struct DeviceCredentials: Codable, Sendable, Equatable {
    public var account: String
    public var deviceId: UInt32
    /// Base64url token (43 characters, 32 random bytes). Use in HTTP Basic auth as `account.deviceId:credential`.
    public var credential: String
    /// Registration and recovery only: the account's recovery code (128 random bits as 8 groups of 4
    /// lowercase hexadecimal digits, `xxxx-xxxx-…`), shown this once; the relay keeps only its SHA-256 hash.
    public var recoveryCode: String?

    public init(account: String, deviceId: UInt32, credential: String, recoveryCode: String? = nil) {
        self.account = account
        self.deviceId = deviceId
        self.credential = credential
        self.recoveryCode = recoveryCode
    }

    /// The value of the `Authorization` header for these credentials.
    public var authorizationHeader: String {
        let raw = "\(account).\(deviceId):\(credential)"
        return "Basic " + Data(raw.utf8).base64EncodedString()
    }
}
