/// Someone this device talks to: an account on the relay, with the name the user gave it.
public struct Contact: Sendable, Equatable {
    /// The relay account name (also the ProtocolAddress name of its devices).
    public let account: String
    public let displayName: String?
    /// When the contact was first stored (ms since 1970).
    public let createdAt: Int64

    public init(account: String, displayName: String?, createdAt: Int64) {
        self.account = account
        self.displayName = displayName
        self.createdAt = createdAt
    }
}

/// One device of a contact, as the relay lists it.
public struct ContactDevice: Sendable, Equatable {
    public let deviceId: UInt32
    public let registrationId: UInt32

    public init(deviceId: UInt32, registrationId: UInt32) {
        self.deviceId = deviceId
        self.registrationId = registrationId
    }
}
