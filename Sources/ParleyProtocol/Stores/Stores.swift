import ParleyCrypto

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

/// Kyber prekeys this device published (PQXDH).
///
/// A last-resort Kyber prekey is kept after use, so the store must remember each (Kyber prekey
/// id, signed prekey id, base key) a session was made with: a repeat means a replayed first
/// message whose session is gone, and is refused (`ProtocolError.reusedBaseKey`), as in
/// libsignal's `mark_kyber_pre_key_used`. A one-time Kyber prekey is removed after its first
/// successful use instead.
public protocol KyberPreKeyStore {
    func loadKyberPreKey(id: UInt32) throws -> KyberPreKeyRecord?
    func storeKyberPreKey(_ record: KyberPreKeyRecord) throws
    func removeKyberPreKey(id: UInt32) throws
    /// Whether a session was already made with this last-resort Kyber prekey, signed prekey and
    /// base key.
    func isKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws -> Bool
    /// Records that a session was made with this last-resort Kyber prekey, signed prekey and base
    /// key. Called only after the message that made it decrypted.
    func markKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws
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
public typealias ProtocolStore = IdentityKeyStore & PreKeyStore & SignedPreKeyStore & KyberPreKeyStore & SessionStore & SenderKeyStore
