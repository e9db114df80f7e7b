import Foundation

/// One device of an account, as listed by `GET /v1/devices` and `GET /v1/accounts/{name}/devices`.
///
/// Another account sees only what starting a session needs (`deviceId`, `registrationId`); `name`,
/// `createdAt` and `lastSeen` are given to the devices of the same account only.
public struct DeviceInfo: Codable, Sendable, Equatable {
    public var deviceId: UInt32
    public var registrationId: UInt32
    /// Own account only.
    public var name: String?
    /// Milliseconds since 1970 (UTC). Own account only.
    public var createdAt: Int64?
    /// Milliseconds since 1970 (UTC) of the last WebSocket connect or disconnect; nil if never. Own account only.
    public var lastSeen: Int64?

    public init(deviceId: UInt32, registrationId: UInt32, name: String?, createdAt: Int64?, lastSeen: Int64?) {
        self.deviceId = deviceId
        self.registrationId = registrationId
        self.name = name
        self.createdAt = createdAt
        self.lastSeen = lastSeen
    }
}

/// Answer of `GET /v1/devices` and `GET /v1/accounts/{name}/devices`.
public struct DeviceListResponse: Codable, Sendable, Equatable {
    public var account: String
    public var devices: [DeviceInfo]

    public init(account: String, devices: [DeviceInfo]) {
        self.account = account
        self.devices = devices
    }
}
