import ParleyCrypto

/// Sender keys: one chain per member per group, handed to the other members once, then one
/// signed ciphertext per group message whatever the group's size.
public enum GroupCipher {
    /// The sender's distribution message for `name` (its own address in a group), creating the
    /// sender key on first use: draws the key id (31 bits), the 32-byte chain seed and the
    /// signing key pair, in that order. Later calls describe the current chain position.
    public static func createDistributionMessage<S: SenderKeyStore>(
        for name: SenderKeyName, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> SenderKeyDistributionMessage {
        var record = try store.loadSenderKey(for: name) ?? SenderKeyRecord()
        if record.states.first?.signingPrivate == nil {
            let idBytes = random.draw(4, purpose: .senderKeyId)
            let keyId = idBytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } & 0x7FFF_FFFF
            var seedDraw = random.draw(32, purpose: .senderChainSeed)
            let seed = SecretBytes(copying: seedDraw)
            seedDraw.withUnsafeMutableBytes { SecretBytes.wipe($0) }
            let signing = try PrivateKey.generate(using: random)
            record.add(
                SenderKeyState(
                    keyId: keyId, chainKey: SenderChainKey(key: seed, iteration: 0),
                    signingPublic: signing.publicKey, signingPrivate: signing))
            try store.storeSenderKey(record, for: name)
        }
        guard let state = record.states.first else { throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: nil) }
        return try SenderKeyDistributionMessage(
            keyId: state.keyId, iteration: state.chainKey.iteration, chainKey: state.chainKey.key.copyBytes(),
            signingKey: state.signingPublic)
    }

    /// Installs a member's sender key from its distribution message, as libsignal's
    /// `add_sender_key_state` does: a state with the same key id and signing key is kept as it
    /// is (a replayed distribution message must not rewind the chain) but moved to the front, so
    /// the chain the sender is using is the last to be evicted; states with the same key id but
    /// another signing key are removed; otherwise a new state goes in front. At most
    /// `Limits.maxSenderKeyStates` are kept, the oldest dropped.
    public static func process<S: SenderKeyStore>(
        _ message: SenderKeyDistributionMessage, for name: SenderKeyName, store: S
    ) throws {
        var record = try store.loadSenderKey(for: name) ?? SenderKeyRecord()
        let known = record.states.first { $0.keyId == message.keyId && $0.signingPublic == message.signingKey }
        record.states.removeAll { $0.keyId == message.keyId }
        record.add(
            known
                ?? SenderKeyState(
                    keyId: message.keyId,
                    chainKey: SenderChainKey(key: SecretBytes(copying: message.chainKey), iteration: message.iteration),
                    signingPublic: message.signingKey, signingPrivate: nil))
        try store.storeSenderKey(record, for: name)
    }

    /// Encrypts a group message under the sender's own newest sender key; draws the 64-byte
    /// signature randomness.
    public static func encrypt<S: SenderKeyStore>(
        _ plaintext: [UInt8], for name: SenderKeyName, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> SenderKeyMessage {
        guard var record = try store.loadSenderKey(for: name), var state = record.states.first,
              let signing = state.signer
        else { throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: nil) }
        let (messageKey, next) = try state.chainKey.step()
        let body = try messageKey.withKeyAndIV { (key, iv) throws(ProtocolError) -> [UInt8] in
            do { return try AES256CBC.encrypt(plaintext, key: key, iv: iv) } catch { throw .crypto((error as? CryptoError) ?? .cipherFailure) }
        }
        let message = try SenderKeyMessage(
            keyId: state.keyId, iteration: messageKey.iteration, ciphertext: body, signingKey: signing, random: random)
        state.chainKey = next
        record.states[0] = state
        try store.storeSenderKey(record, for: name)
        return message
    }

    /// Decrypts a group message from `name.sender`. The signature is checked before the
    /// iteration, so a forged replay reports `badSignature`, a genuine one `duplicateMessage`.
    public static func decrypt<S: SenderKeyStore>(
        _ message: SenderKeyMessage, from name: SenderKeyName, store: S
    ) throws -> [UInt8] {
        guard var record = try store.loadSenderKey(for: name), let index = record.stateIndex(keyId: message.keyId) else {
            throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: message.keyId)
        }
        var state = record.states[index]
        guard message.verifySignature(state.verifier) else { throw ProtocolError.badSignature }
        let key = try messageKey(state: &state, iteration: message.iteration)
        let plaintext = try key.withKeyAndIV { (k, iv) throws(ProtocolError) -> [UInt8] in
            do { return try AES256CBC.decrypt(message.ciphertext, key: k, iv: iv) } catch { throw .invalidCiphertext }
        }
        record.states[index] = state
        try store.storeSenderKey(record, for: name)
        return plaintext
    }

    static func messageKey(state: inout SenderKeyState, iteration: UInt32) throws(ProtocolError) -> SenderMessageKey {
        try SkippedKeyWalk.messageKey(
            chain: &state.chainKey, skipped: &state.skippedKeys, at: iteration, maxForwardJumps: Limits.maxSenderKeyForwardJumps)
    }
}
