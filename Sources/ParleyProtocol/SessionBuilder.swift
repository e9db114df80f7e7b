import ParleyCrypto

/// Starts sessions: the initiator's half of PQXDH (or X3DH), from a published prekey bundle.
public enum SessionBuilder {
    /// Verifies `bundle`, runs the initiator's key agreement and makes the result the current
    /// session with `address` (archiving any previous one). Until the peer answers, messages to it
    /// are PreKeySignalMessages.
    ///
    /// With a Kyber prekey in the bundle the session is PQXDH (version 4): draws the base key, the
    /// KEM encapsulation randomness, then the first sending ratchet key. Without one it is X3DH
    /// (version 3, base key then ratchet key), which `policy.requirePostQuantum` refuses.
    ///
    /// Order of checks, before anything is drawn or stored: the one-time prekey and its id come
    /// together (`malformed`); the bundle's identity is trusted (`untrustedIdentity`); the signed
    /// prekey's signature, then the Kyber prekey's (`badSignature`); a bundle without a Kyber
    /// prekey under `requirePostQuantum` (`x3dhRejected`).
    public static func process<S: IdentityKeyStore & SessionStore>(
        bundle: PreKeyBundle, for address: ProtocolAddress, store: S, policy: SessionPolicy = .default,
        random: any RandomSource = SystemRandom.shared
    ) throws {
        guard (bundle.preKey == nil) == (bundle.preKeyId == nil) else {
            throw ProtocolError.malformed("bundle has a one-time prekey without its id, or an id without the key")
        }
        guard try store.isTrustedIdentity(bundle.identityKey, for: address, direction: .sending) else {
            throw ProtocolError.untrustedIdentity(address: address)
        }
        guard XEdDSA.verify(bundle.signedPreKeySignature, of: bundle.signedPreKey.serialized, by: bundle.identityKey.publicKey) else {
            throw ProtocolError.badSignature
        }
        if let kyber = bundle.kyberPreKey {
            guard XEdDSA.verify(kyber.signature, of: kyber.publicKey.serialized, by: bundle.identityKey.publicKey) else {
                throw ProtocolError.badSignature
            }
        } else if policy.requirePostQuantum {
            throw ProtocolError.x3dhRejected("\(address) publishes no Kyber prekey (post-quantum sessions are required)")
        }
        let baseKey = try PrivateKey.generate(using: random)
        var (state, kyberCiphertext) = try PQXDH.aliceSession(
            ourIdentity: try store.identityKeyPair(), ourBaseKey: baseKey, theirIdentity: bundle.identityKey,
            theirSignedPreKey: bundle.signedPreKey, theirOneTimePreKey: bundle.preKey, theirKyberPreKey: bundle.kyberPreKey?.publicKey,
            random: random)
        state.pendingPreKey = PendingPreKey(
            preKeyId: bundle.preKeyId, signedPreKeyId: bundle.signedPreKeyId, baseKey: baseKey.publicKey,
            kyber: zip2(bundle.kyberPreKey, kyberCiphertext).map { PendingPreKey.Kyber(id: $0.id, ciphertext: $1.serialized) })
        state.localRegistrationId = try store.localRegistrationId()
        state.remoteRegistrationId = bundle.registrationId

        var record = try store.loadSession(for: address) ?? SessionRecord()
        record.promote(state)
        try store.saveIdentity(bundle.identityKey, for: address)
        try store.storeSession(record, for: address)
    }

    private static func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
        guard let a, let b else { return nil }
        return (a, b)
    }
}
