/// Which way a message is going when an identity's trust is checked.
public enum Direction: Sendable {
    case sending
    case receiving
}

/// The device's own identity and the identities it has seen for others.
///
/// Stores are synchronous: the protocol layer does no I/O of its own, and a persistent store
/// (SQLite) runs each protocol operation inside one transaction of its own choosing.
public protocol IdentityKeyStore {
    func identityKeyPair() throws -> IdentityKeyPair
    func localRegistrationId() throws -> UInt32
    /// Records `identity` for `address`; returns true when it replaced a different key.
    @discardableResult
    func saveIdentity(_ identity: IdentityKey, for address: ProtocolAddress) throws -> Bool
    /// Whether `identity` may be used with `address` (trust on first use: unknown is trusted).
    func isTrustedIdentity(_ identity: IdentityKey, for address: ProtocolAddress, direction: Direction) throws -> Bool
    func identity(for address: ProtocolAddress) throws -> IdentityKey?
}

/// One-time prekeys this device published.
public protocol PreKeyStore {
    func loadPreKey(id: UInt32) throws -> PreKeyRecord?
    func storePreKey(_ record: PreKeyRecord) throws
    func removePreKey(id: UInt32) throws
}

/// Signed prekeys this device published (the current one and recent ones).
public protocol SignedPreKeyStore {
    func loadSignedPreKey(id: UInt32) throws -> SignedPreKeyRecord?
    func storeSignedPreKey(_ record: SignedPreKeyRecord) throws
}

/// Session records per address.
public protocol SessionStore {
    func loadSession(for address: ProtocolAddress) throws -> SessionRecord?
    func storeSession(_ record: SessionRecord, for address: ProtocolAddress) throws
}

/// Identifies one sender's sender key in one group.
public struct SenderKeyName: Hashable, Sendable, CustomStringConvertible {
    public let groupId: String
    public let sender: ProtocolAddress

    public init(groupId: String, sender: ProtocolAddress) {
        self.groupId = groupId
        self.sender = sender
    }

    public var description: String { "\(groupId)/\(sender)" }
}

/// Sender-key records per (group, sender).
public protocol SenderKeyStore {
    func loadSenderKey(for name: SenderKeyName) throws -> SenderKeyRecord?
    func storeSenderKey(_ record: SenderKeyRecord, for name: SenderKeyName) throws
}

/// All the stores a device needs.
public typealias ProtocolStore = IdentityKeyStore & PreKeyStore & SignedPreKeyStore & SessionStore & SenderKeyStore
