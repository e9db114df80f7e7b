import ParleyCrypto

/// Starts sessions: the initiator's half of X3DH, from a published prekey bundle.
public enum SessionBuilder {
    /// Verifies `bundle`, runs X3DH as the initiator and makes the result the current session
    /// with `address` (archiving any previous one). Draws the base key, then the first sending
    /// ratchet key. Until the peer answers, messages to it are PreKeySignalMessages.
    ///
    /// Throws `ProtocolError.untrustedIdentity` if the bundle's identity differs from the one
    /// recorded for `address`, and `.badSignature` if the signed prekey's signature is invalid;
    /// nothing is stored then.
    public static func process<S: IdentityKeyStore & SessionStore>(
        bundle: PreKeyBundle, for address: ProtocolAddress, store: S, random: any RandomSource = SystemRandom.shared
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
        let baseKey = try PrivateKey.generate(using: random)
        var state = try X3DH.aliceSession(
            ourIdentity: try store.identityKeyPair(), ourBaseKey: baseKey, theirIdentity: bundle.identityKey,
            theirSignedPreKey: bundle.signedPreKey, theirOneTimePreKey: bundle.preKey, random: random)
        state.pendingPreKey = PendingPreKey(
            preKeyId: bundle.preKeyId, signedPreKeyId: bundle.signedPreKeyId,
            baseKey: baseKey.publicKey)
        state.localRegistrationId = try store.localRegistrationId()
        state.remoteRegistrationId = bundle.registrationId

        var record = try store.loadSession(for: address) ?? SessionRecord()
        record.promote(state)
        try store.saveIdentity(bundle.identityKey, for: address)
        try store.storeSession(record, for: address)
    }
}
