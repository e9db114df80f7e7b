import Foundation

/// Answer of `POST /v1/devices/links`: a one-time code the existing device shows to the new device.
public struct LinkCodeResponse: Codable, Sendable, Equatable {
    /// Base64url, 22 characters (16 random bytes).
    public var code: String
    /// Milliseconds since 1970 (UTC) after which the code can no longer be claimed.
    public var expiresAt: Int64

    public init(code: String, expiresAt: Int64) {
        self.code = code
        self.expiresAt = expiresAt
    }
}

/// `POST /v1/devices/links/claim` (unauthenticated): the new device claims a code with its own keys.
public struct ClaimLinkRequest: Codable, Sendable, Equatable {
    public var code: String
    public var device: NewDeviceKeys

    public init(code: String, device: NewDeviceKeys) {
        self.code = code
        self.device = device
    }
}

/// State of a link code.
public enum LinkState: String, Codable, Sendable {
    /// Created, waiting for a new device to claim it.
    case open
    /// Claimed by a new device, waiting for approval by the existing device.
    case claimed
    /// Approved: the new device is active.
    case approved
}

/// Answer of `GET /v1/devices/links/{code}` (existing device): who claimed the code.
public struct LinkClaimInfo: Codable, Sendable, Equatable {
    public var code: String
    public var state: LinkState
    /// Present once claimed.
    public var deviceId: UInt32?
    public var registrationId: UInt32?
    public var identityKey: Data?
    public var name: String?

    public init(
        code: String, state: LinkState, deviceId: UInt32? = nil, registrationId: UInt32? = nil,
        identityKey: Data? = nil, name: String? = nil
    ) {
        self.code = code
        self.state = state
        self.deviceId = deviceId
        self.registrationId = registrationId
        self.identityKey = identityKey
        self.name = name
    }
}

/// `POST /v1/devices/links/{code}/approve` (existing device): activates the new device and
/// hands it an opaque encrypted blob (account key material) that the relay only stores and forwards.
public struct ApproveLinkRequest: Codable, Sendable, Equatable {
    public var provisioningBlob: Data
    /// When true, the approved device stays out of device lists, bundles and message fan-out
    /// until it has uploaded its keys with an `identityKey` (`PUT /v1/keys`): the provisioning
    /// key it claimed with is never handed out to senders. Absent/false: active at once.
    public var awaitIdentityUpload: Bool?

    public init(provisioningBlob: Data, awaitIdentityUpload: Bool? = nil) {
        self.provisioningBlob = provisioningBlob
        self.awaitIdentityUpload = awaitIdentityUpload
    }
}

/// Answer of `GET /v1/devices/links/status` (new device, authenticated with its pending credentials).
public struct LinkStatusResponse: Codable, Sendable, Equatable {
    public var state: LinkState
    /// Present once approved.
    public var provisioningBlob: Data?

    public init(state: LinkState, provisioningBlob: Data?) {
        self.state = state
        self.provisioningBlob = provisioningBlob
    }
}
