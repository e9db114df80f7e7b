import ParleyProtocol

/// What the store knows about another device's identity key.
public struct RemoteIdentity: Sendable, Equatable {
    public let address: ProtocolAddress
    public let identityKey: IdentityKey
    /// Set by the user after comparing safety numbers; cleared when the key changes.
    public let verified: Bool
    /// When this key was first recorded for the address (ms since 1970); reset when it changes.
    public let firstSeen: Int64

    public init(address: ProtocolAddress, identityKey: IdentityKey, verified: Bool, firstSeen: Int64) {
        self.address = address
        self.identityKey = identityKey
        self.verified = verified
        self.firstSeen = firstSeen
    }
}
