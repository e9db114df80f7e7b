import ParleyCrypto

/// A complete in-memory store, for tests, benchmarks and the conformance runner. Not
/// thread-safe: use one per task.
public final class InMemoryProtocolStore: IdentityKeyStore, PreKeyStore, SignedPreKeyStore, KyberPreKeyStore, SessionStore, SenderKeyStore {
    /// A (Kyber prekey id, signed prekey id, base key) a last-resort Kyber prekey was used with.
    public struct KyberUse: Hashable, Sendable {
        public let kyberPreKeyId: UInt32
        public let signedPreKeyId: UInt32
        public let baseKey: PublicKey
    }

    private let identity: IdentityKeyPair
    private let registrationId: UInt32
    public private(set) var identities: [ProtocolAddress: IdentityKey] = [:]
    public private(set) var preKeys: [UInt32: PreKeyRecord] = [:]
    public private(set) var signedPreKeys: [UInt32: SignedPreKeyRecord] = [:]
    public private(set) var kyberPreKeys: [UInt32: KyberPreKeyRecord] = [:]
    public private(set) var kyberPreKeyUses: Set<KyberUse> = []
    public private(set) var sessions: [ProtocolAddress: SessionRecord] = [:]
    public private(set) var senderKeys: [SenderKeyName: SenderKeyRecord] = [:]

    public init(identity: IdentityKeyPair, registrationId: UInt32) {
        self.identity = identity
        self.registrationId = registrationId
    }

    public func identityKeyPair() -> IdentityKeyPair { identity }
    public func localRegistrationId() -> UInt32 { registrationId }

    @discardableResult
    public func saveIdentity(_ key: IdentityKey, for address: ProtocolAddress) -> Bool {
        let old = identities[address]
        if old == key { return false }
        identities[address] = key
        return old != nil
    }

    public func isTrustedIdentity(_ key: IdentityKey, for address: ProtocolAddress, direction: Direction) -> Bool {
        guard let known = identities[address] else { return true }
        return known == key
    }

    public func identity(for address: ProtocolAddress) -> IdentityKey? { identities[address] }

    public func loadPreKey(id: UInt32) -> PreKeyRecord? { preKeys[id] }
    public func storePreKey(_ record: PreKeyRecord) { preKeys[record.id] = record }
    public func removePreKey(id: UInt32) { preKeys[id] = nil }

    public func loadSignedPreKey(id: UInt32) -> SignedPreKeyRecord? { signedPreKeys[id] }
    public func storeSignedPreKey(_ record: SignedPreKeyRecord) { signedPreKeys[record.id] = record }

    public func loadKyberPreKey(id: UInt32) -> KyberPreKeyRecord? { kyberPreKeys[id] }
    public func storeKyberPreKey(_ record: KyberPreKeyRecord) { kyberPreKeys[record.id] = record }
    public func removeKyberPreKey(id: UInt32) {
        kyberPreKeys[id] = nil
        kyberPreKeyUses = kyberPreKeyUses.filter { $0.kyberPreKeyId != id }
    }
    public func isKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) -> Bool {
        kyberPreKeyUses.contains(KyberUse(kyberPreKeyId: id, signedPreKeyId: signedPreKeyId, baseKey: baseKey))
    }
    public func markKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) {
        kyberPreKeyUses.insert(KyberUse(kyberPreKeyId: id, signedPreKeyId: signedPreKeyId, baseKey: baseKey))
    }

    public func loadSession(for address: ProtocolAddress) -> SessionRecord? { sessions[address] }
    public func storeSession(_ record: SessionRecord, for address: ProtocolAddress) { sessions[address] = record }

    public func loadSenderKey(for name: SenderKeyName) -> SenderKeyRecord? { senderKeys[name] }
    public func storeSenderKey(_ record: SenderKeyRecord, for name: SenderKeyName) { senderKeys[name] = record }
}
