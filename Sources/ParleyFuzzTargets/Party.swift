import ParleyCrypto
import ParleyProtocol

/// One side of a fuzzed conversation: an in-memory protocol store with an identity, a signed
/// prekey and one-time prekeys, and its own deterministic random source.
final class Party {
    let address: ProtocolAddress
    let store: InMemoryProtocolStore
    let random: DeterministicRandom
    static let signedPreKeyId: UInt32 = 1
    /// The parties publish no Kyber prekey and accept version-3 sessions: the committed seed corpus and
    /// regression outcomes are version-3 sessions under the harness's deterministic keys (PQXDH's own
    /// checks are covered by the v4 conformance vectors and ParleyProtocolTests).
    static let policy = SessionPolicy.allowClassical

    private init(address: ProtocolAddress, store: InMemoryProtocolStore, random: DeterministicRandom) {
        self.address = address
        self.store = store
        self.random = random
    }

    /// A new party with identity, registration id, signed prekey 1 and one-time prekeys `preKeyIds`,
    /// all drawn from a random source seeded with `seed`.
    static func make(name: String, registrationId: UInt32, seed: UInt64, preKeyIds: ClosedRange<UInt32>) throws -> Party {
        let random = DeterministicRandom(seed: seed)
        let identity = try IdentityKeyPair.generate(using: random)
        let store = InMemoryProtocolStore(identity: identity, registrationId: registrationId)
        store.storeSignedPreKey(try SignedPreKeyRecord.generate(id: signedPreKeyId, identity: identity, timestamp: 0, using: random))
        for id in preKeyIds { store.storePreKey(PreKeyRecord(id: id, keyPair: try PrivateKey.generate(using: random))) }
        return Party(address: ProtocolAddress(name: name, deviceId: 1), store: store, random: random)
    }

    /// An independent copy (stores are classes; records and keys are values).
    func copy() -> Party {
        let clone = InMemoryProtocolStore(identity: store.identityKeyPair(), registrationId: store.localRegistrationId())
        for (address, key) in store.identities { clone.saveIdentity(key, for: address) }
        for record in store.preKeys.values { clone.storePreKey(record) }
        for record in store.signedPreKeys.values { clone.storeSignedPreKey(record) }
        for (address, record) in store.sessions { clone.storeSession(record, for: address) }
        for (name, record) in store.senderKeys { clone.storeSenderKey(record, for: name) }
        return Party(address: address, store: clone, random: DeterministicRandom(seed: random.state))
    }

    var identityKey: IdentityKey { store.identityKeyPair().identityKey }

    /// This party's prekey bundle, with one-time prekey `preKeyId` (nil: without one).
    func bundle(preKeyId: UInt32?) -> PreKeyBundle? {
        guard let signed = store.loadSignedPreKey(id: Self.signedPreKeyId) else { return nil }
        let oneTime = preKeyId.flatMap { store.loadPreKey(id: $0) }
        if preKeyId != nil && oneTime == nil { return nil }
        return PreKeyBundle(
            registrationId: store.localRegistrationId(), deviceId: address.deviceId, identityKey: identityKey,
            signedPreKeyId: signed.id, signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature,
            preKeyId: oneTime?.id, preKey: oneTime?.keyPair.publicKey)
    }

    /// Everything a decrypt from `peer` may change, to check that a failed one changed nothing.
    func snapshot(peer: ProtocolAddress, group: SenderKeyName? = nil) -> Snapshot {
        Snapshot(
            session: try? store.loadSession(for: peer)?.serialized(), identity: store.identity(for: peer),
            preKeys: store.preKeys.keys.sorted(), signedPreKeys: store.signedPreKeys.keys.sorted(),
            senderKey: group.flatMap { try? store.loadSenderKey(for: $0)?.serialized() })
    }

    struct Snapshot: Equatable {
        let session: [UInt8]?
        let identity: IdentityKey?
        let preKeys: [UInt32]
        let signedPreKeys: [UInt32]
        let senderKey: [UInt8]?
    }

    /// Decrypts `bytes` as a PreKeySignalMessage (`preKey`) or a SignalMessage from `sender`, as a
    /// client does by the envelope type. A failed attempt gives its random draws back.
    func decrypt(_ bytes: [UInt8], preKey: Bool, from sender: ProtocolAddress) -> Result<[UInt8], ProtocolError> {
        let saved = random.state
        let result: Result<[UInt8], ProtocolError>
        do {
            if preKey {
                result = .success(
                    try SessionCipher.decrypt(
                        try PreKeySignalMessage(serialized: bytes), from: sender, store: store, policy: Self.policy, random: random))
            } else {
                result = .success(try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: sender, store: store, random: random))
            }
        } catch let error as ProtocolError {
            result = .failure(error)
        } catch {
            result = .failure(.corruptState("\(error)"))
        }
        if case .failure = result { random.state = saved }
        return result
    }
}
