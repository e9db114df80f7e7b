import ParleyCrypto
import ParleyProtocol

/// The device store as the protocol sees it while a changed identity is being proven: the
/// `candidate` key is trusted for `address` during this one decryption; everything else is the
/// store itself. It is used inside the store transaction that decrypts the message, so nothing is
/// kept unless the message decrypts under the candidate key, and then the protocol's own
/// `saveIdentity` records the key together with the session it produced (issue 10, defect 3).
struct CandidateIdentityStore: IdentityKeyStore, SessionStore, PreKeyStore, SignedPreKeyStore, KyberPreKeyStore {
    let base: DeviceStore
    let address: ProtocolAddress
    let candidate: IdentityKey

    func identityKeyPair() throws -> IdentityKeyPair { try base.identityKeyPair() }
    func localRegistrationId() throws -> UInt32 { try base.localRegistrationId() }

    @discardableResult
    func saveIdentity(_ identity: IdentityKey, for address: ProtocolAddress) throws -> Bool {
        try base.saveIdentity(identity, for: address)
    }

    func isTrustedIdentity(_ identity: IdentityKey, for address: ProtocolAddress, direction: Direction) throws -> Bool {
        if address == self.address && identity == candidate { return true }
        return try base.isTrustedIdentity(identity, for: address, direction: direction)
    }

    func identity(for address: ProtocolAddress) throws -> IdentityKey? { try base.identity(for: address) }

    func loadSession(for address: ProtocolAddress) throws -> SessionRecord? { try base.loadSession(for: address) }
    func storeSession(_ record: SessionRecord, for address: ProtocolAddress) throws { try base.storeSession(record, for: address) }

    func loadPreKey(id: UInt32) throws -> PreKeyRecord? { try base.loadPreKey(id: id) }
    func storePreKey(_ record: PreKeyRecord) throws { try base.storePreKey(record) }
    func removePreKey(id: UInt32) throws { try base.removePreKey(id: id) }

    func loadSignedPreKey(id: UInt32) throws -> SignedPreKeyRecord? { try base.loadSignedPreKey(id: id) }
    func storeSignedPreKey(_ record: SignedPreKeyRecord) throws { try base.storeSignedPreKey(record) }

    func loadKyberPreKey(id: UInt32) throws -> KyberPreKeyRecord? { try base.loadKyberPreKey(id: id) }
    func storeKyberPreKey(_ record: KyberPreKeyRecord) throws { try base.storeKyberPreKey(record) }
    func removeKyberPreKey(id: UInt32) throws { try base.removeKyberPreKey(id: id) }
    func isKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws -> Bool {
        try base.isKyberPreKeyUsed(id: id, signedPreKeyId: signedPreKeyId, baseKey: baseKey)
    }
    func markKyberPreKeyUsed(id: UInt32, signedPreKeyId: UInt32, baseKey: PublicKey) throws {
        try base.markKyberPreKeyUsed(id: id, signedPreKeyId: signedPreKeyId, baseKey: baseKey)
    }
}
