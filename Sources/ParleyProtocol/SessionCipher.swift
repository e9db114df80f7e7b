import ParleyCrypto

/// Encrypts and decrypts pairwise messages (the Double Ratchet).
///
/// Every operation loads the record, works on a copy, and stores it only when the whole
/// operation succeeded: a message that fails to decrypt changes no session, consumes no prekey
/// and loses no skipped key.
public enum SessionCipher {
    // MARK: Encrypt

    /// Encrypts `plaintext` for `address` under the current session.
    public static func encrypt<S: IdentityKeyStore & SessionStore>(
        _ plaintext: [UInt8], for address: ProtocolAddress, store: S
    ) throws -> CiphertextMessage {
        guard var record = try store.loadSession(for: address), var state = record.current else {
            throw ProtocolError.noSession(address)
        }
        record.current = nil  // `state` is then the only reference: mutated in place, not copied
        let remoteIdentity = state.remoteIdentity
        let (keys, nextChainKey) = try state.senderChainKey.step()
        let message = try SignalMessage.encrypt(
            plaintext, keys: keys, senderRatchetKey: state.senderRatchetKey.publicKey,
            previousCounter: state.previousCounter, senderIdentity: state.localIdentity, receiverIdentity: remoteIdentity)
        let result: CiphertextMessage
        if let pending = state.pendingPreKey {
            result = .preKey(
                try PreKeySignalMessage(
                    registrationId: state.localRegistrationId, preKeyId: pending.preKeyId,
                    signedPreKeyId: pending.signedPreKeyId, baseKey: pending.baseKey,
                    identityKey: state.localIdentity, message: message))
        } else {
            result = .signal(message)
        }
        // Only the sending chain key advances; it is stored inline, so nothing else is copied.
        state.senderChainKey = nextChainKey

        guard try store.isTrustedIdentity(remoteIdentity, for: address, direction: .sending) else {
            throw ProtocolError.untrustedIdentity(address: address)
        }
        try store.saveIdentity(remoteIdentity, for: address)
        record.current = state
        try store.storeSession(record, for: address)
        return result
    }

    // MARK: Decrypt

    /// Decrypts a SignalMessage from `address`. Each session state tried (the current one, then
    /// archived ones) that has no receiving chain for the message's ratchet key draws one new
    /// ratchet key, failed attempts included.
    public static func decrypt<S: IdentityKeyStore & SessionStore>(
        _ message: SignalMessage, from address: ProtocolAddress, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> [UInt8] {
        guard var record = try store.loadSession(for: address) else { throw ProtocolError.noSession(address) }
        let plaintext = try decrypt(record: &record, message: message, random: random)
        guard let identity = record.current?.remoteIdentity else { throw ProtocolError.noSession(address) }
        guard try store.isTrustedIdentity(identity, for: address, direction: .receiving) else {
            throw ProtocolError.untrustedIdentity(address: address)
        }
        try store.saveIdentity(identity, for: address)
        try store.storeSession(record, for: address)
        return plaintext
    }

    /// Decrypts a PreKeySignalMessage from `address`.
    ///
    /// The wrapper is not authenticated by itself, so everything it names is used only through
    /// the one session it selects: the session created from the same base key (current or
    /// archived, made current in the working copy), or else a new X3DH session. The inner message
    /// is decrypted under that session alone, never under other archived states (libsignal,
    /// 2025-03: "don't try older sessions for PreKey messages"): otherwise a genuine
    /// SignalMessage re-wrapped with a fresh base key and a live one-time prekey id would decrypt
    /// under an archived session and consume the prekey and archive a junk state. A failure of
    /// any kind leaves the record, the prekeys and the identity store as they were. The one-time
    /// prekey is removed only when the message decrypted.
    public static func decrypt<S: IdentityKeyStore & SessionStore & PreKeyStore & SignedPreKeyStore>(
        _ message: PreKeySignalMessage, from address: ProtocolAddress, store: S,
        random: any RandomSource = SystemRandom.shared
    ) throws -> [UInt8] {
        guard try store.isTrustedIdentity(message.identityKey, for: address, direction: .receiving) else {
            throw ProtocolError.untrustedIdentity(address: address)
        }
        // X25519 ignores bit 255 and reduces mod p: a re-encoded base key would run X3DH again
        // with the same secrets (a replay). Only the canonical encoding is accepted.
        guard message.baseKey.isCanonicalEncoding else {
            throw ProtocolError.invalidKey("base key is not a canonical encoding")
        }
        var record = try store.loadSession(for: address) ?? SessionRecord()
        var consumedPreKey: UInt32? = nil
        if !record.promoteSession(withBaseKey: message.baseKey) {
            guard let signed = try store.loadSignedPreKey(id: message.signedPreKeyId) else {
                throw ProtocolError.missingSignedPreKey(message.signedPreKeyId)
            }
            var oneTime: PrivateKey? = nil
            if let id = message.preKeyId {
                guard let record = try store.loadPreKey(id: id) else { throw ProtocolError.missingPreKey(id) }
                oneTime = record.keyPair
                consumedPreKey = id
            }
            var state = try X3DH.bobSession(
                ourIdentity: try store.identityKeyPair(), ourSignedPreKey: signed.keyPair, ourOneTimePreKey: oneTime,
                theirIdentity: message.identityKey, theirBaseKey: message.baseKey)
            state.localRegistrationId = try store.localRegistrationId()
            state.remoteRegistrationId = message.registrationId
            record.promote(state)
        }
        guard var state = record.current else { throw ProtocolError.noSession(address) }
        let plaintext = try decrypt(state: &state, message: message.message, random: random)
        record.current = state
        try store.saveIdentity(message.identityKey, for: address)
        try store.storeSession(record, for: address)
        if let id = consumedPreKey { try store.removePreKey(id: id) }
        return plaintext
    }

    /// Tries the current state, then each archived one (promoting the one that works). A
    /// duplicate is reported at once; otherwise the current state's error is reported.
    static func decrypt(record: inout SessionRecord, message: SignalMessage, random: any RandomSource) throws(ProtocolError) -> [UInt8] {
        var firstError: ProtocolError? = nil
        if var state = record.current {
            do {
                let plaintext = try decrypt(state: &state, message: message, random: random)
                record.current = state
                return plaintext
            } catch {
                if case .duplicateMessage = error { throw error }
                firstError = error
            }
        }
        for index in record.previous.indices {
            var state = record.previous[index]
            do {
                let plaintext = try decrypt(state: &state, message: message, random: random)
                record.previous.remove(at: index)
                record.promote(state)
                return plaintext
            } catch {
                if case .duplicateMessage = error { throw error }
                if firstError == nil { firstError = error }
            }
        }
        throw firstError ?? .badMAC
    }

    /// Decrypts under one state, mutating `state` (the caller's copy) as it goes.
    static func decrypt(state: inout SessionState, message: SignalMessage, random: any RandomSource) throws(ProtocolError) -> [UInt8] {
        guard message.messageVersion == state.version else { throw .unknownVersion(message.messageVersion) }
        let chainIndex: Int
        if let existing = state.receiverChainIndex(for: message.senderRatchetKey) {
            chainIndex = existing
        } else {
            try ratchetStep(state: &state, theirRatchetKey: message.senderRatchetKey, random: random)
            chainIndex = state.receiverChains.count - 1
        }
        let keys = try messageKeys(chain: &state.receiverChains[chainIndex], counter: message.counter)
        guard try message.verifyMAC(senderIdentity: state.remoteIdentity, receiverIdentity: state.localIdentity, keys: keys) else {
            throw .badMAC
        }
        let plaintext = try keys.withCipherKey { (key, iv) throws(ProtocolError) -> [UInt8] in
            do { return try AES256CBC.decrypt(message.body, key: key, iv: iv) } catch {
                throw .invalidCiphertext
            }
        }
        if state.pendingPreKey != nil { state.pendingPreKey = nil }
        return plaintext
    }

    /// A DH ratchet step on receiving a new ratchet key: derive the receiving chain, draw our next
    /// ratchet key, derive the next sending chain.
    static func ratchetStep(state: inout SessionState, theirRatchetKey: PublicKey, random: any RandomSource) throws(ProtocolError) {
        let (receivingRoot, receivingChain) = try state.rootKey.createChain(
            theirRatchetKey: theirRatchetKey, ourRatchetKey: state.senderRatchetKey)
        let ourNewRatchetKey: PrivateKey
        do { ourNewRatchetKey = try PrivateKey.generate(using: random) } catch { throw .crypto(error) }
        let (sendingRoot, sendingChain) = try receivingRoot.createChain(
            theirRatchetKey: theirRatchetKey, ourRatchetKey: ourNewRatchetKey)
        state.rootKey = sendingRoot
        state.addReceiverChain(ReceiverChain(ratchetKey: theirRatchetKey, chainKey: receivingChain))
        state.previousCounter = max(state.senderChainKey.index, 1) - 1
        state.senderChain = SenderChain(ratchetKey: ourNewRatchetKey, chainKey: sendingChain)
    }

    /// The message keys for `counter` on `chain` (see `SkippedKeyWalk`).
    static func messageKeys(chain: inout ReceiverChain, counter: UInt32) throws(ProtocolError) -> MessageKeys {
        try SkippedKeyWalk.messageKey(
            chain: &chain.chainKey, skipped: &chain.skippedKeys, at: counter, maxForwardJumps: Limits.maxForwardJumps)
    }
}
