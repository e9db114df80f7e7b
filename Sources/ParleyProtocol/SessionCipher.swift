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
            plaintext, version: state.version, keys: keys, senderRatchetKey: state.senderRatchetKey.publicKey,
            previousCounter: state.previousCounter, senderIdentity: state.localIdentity, receiverIdentity: remoteIdentity)
        let result: CiphertextMessage
        if let pending = state.pendingPreKey {
            result = .preKey(
                try PreKeySignalMessage(
                    registrationId: state.localRegistrationId, preKeyId: pending.preKeyId,
                    signedPreKeyId: pending.signedPreKeyId, baseKey: pending.baseKey,
                    identityKey: state.localIdentity, message: message, kyber: pending.kyber.map { ($0.id, $0.ciphertext) }))
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
    /// the one session it selects: the session of the same version created from the same base
    /// key (current or archived, made current in the working copy), or else a new PQXDH (or, if
    /// `policy` allows it, X3DH) session. The inner message is decrypted under that session
    /// alone, never under other archived states (libsignal, 2025-03: "don't try older sessions
    /// for PreKey messages"): otherwise a genuine SignalMessage re-wrapped with a fresh base key
    /// and a live one-time prekey id would decrypt under an archived session and consume the
    /// prekey and archive a junk state.
    ///
    /// Order of checks (libsignal's; Specs/protocol.md §4.9), the first failure wins: identity
    /// trust; a session with this version and base key exists (then straight to the inner
    /// message); a version-3 message under `requirePostQuantum` (`x3dhRejected`); the signed
    /// prekey, Kyber prekey and one-time prekey ids (`missing*PreKey`, "unknown_prekey"); the base
    /// key is canonical (`invalidBaseKey`); the Kyber ciphertext's type and length
    /// (`invalidKyber`); the inner message (version, chain, counter, MAC); a last-resort Kyber
    /// prekey already used with this signed prekey and base key (`reusedBaseKey`).
    ///
    /// A failure of any kind leaves the record, the prekeys and the identity store as they were.
    /// Only after the message decrypted: the identity is saved, the session stored, a one-time
    /// prekey (EC or Kyber) removed, a last-resort Kyber prekey's use recorded.
    public static func decrypt<S: IdentityKeyStore & SessionStore & PreKeyStore & SignedPreKeyStore & KyberPreKeyStore>(
        _ message: PreKeySignalMessage, from address: ProtocolAddress, store: S, policy: SessionPolicy = .default,
        random: any RandomSource = SystemRandom.shared
    ) throws -> [UInt8] {
        guard try store.isTrustedIdentity(message.identityKey, for: address, direction: .receiving) else {
            throw ProtocolError.untrustedIdentity(address: address)
        }
        var record = try store.loadSession(for: address) ?? SessionRecord()
        var consumedPreKey: UInt32? = nil
        var usedKyber: KyberPreKeyRecord? = nil
        if !record.promoteSession(version: message.messageVersion, baseKey: message.baseKey) {
            if message.messageVersion == Limits.preKyberVersion && policy.requirePostQuantum {
                throw ProtocolError.x3dhRejected("version 3 PreKeySignalMessage for a new session (post-quantum sessions are required)")
            }
            guard let signed = try store.loadSignedPreKey(id: message.signedPreKeyId) else {
                throw ProtocolError.missingSignedPreKey(message.signedPreKeyId)
            }
            // A version-3 message's Kyber fields, if any, are not used: X3DH does not bind them.
            let isPQXDH = message.messageVersion == Limits.kyberVersion
            var kyber: (record: KyberPreKeyRecord, ciphertext: [UInt8])? = nil
            if isPQXDH, let id = message.kyberPreKeyId, let ciphertext = message.kyberCiphertext {
                guard let record = try store.loadKyberPreKey(id: id) else { throw ProtocolError.missingKyberPreKey(id) }
                kyber = (record, ciphertext)
            }
            var oneTime: PrivateKey? = nil
            if let id = message.preKeyId {
                guard let record = try store.loadPreKey(id: id) else { throw ProtocolError.missingPreKey(id) }
                oneTime = record.keyPair
                consumedPreKey = id
            }
            // X25519 ignores bit 255 and reduces mod p: a re-encoded base key would run the key
            // agreement again with the same secrets (a replay). Only canonical keys are accepted.
            guard message.baseKey.isCanonical else { throw ProtocolError.invalidBaseKey }
            var ciphertext: KEMCiphertext? = nil
            if let kyber {
                do { ciphertext = try KEMCiphertext(serialized: kyber.ciphertext) } catch {
                    throw ProtocolError.invalidKyber("Kyber ciphertext: \(error.reason ?? "\(error)")")
                }
                usedKyber = kyber.record
            } else if isPQXDH {
                // The parser guarantees both fields on a version-4 message.
                throw ProtocolError.invalidKyber("version 4 PreKeySignalMessage without a Kyber prekey")
            }
            var state = try PQXDH.bobSession(
                ourIdentity: try store.identityKeyPair(), ourSignedPreKey: signed.keyPair, ourOneTimePreKey: oneTime,
                ourKyberPreKey: usedKyber?.keyPair.secretKey, kyberCiphertext: ciphertext,
                theirIdentity: message.identityKey, theirBaseKey: message.baseKey)
            state.localRegistrationId = try store.localRegistrationId()
            state.remoteRegistrationId = message.registrationId
            record.promote(state)
        }
        guard var state = record.current else { throw ProtocolError.noSession(address) }
        let plaintext = try decrypt(state: &state, message: message.message, random: random)
        if let kyber = usedKyber, kyber.isLastResort,
           try store.isKyberPreKeyUsed(id: kyber.id, signedPreKeyId: message.signedPreKeyId, baseKey: message.baseKey)
        {
            throw ProtocolError.reusedBaseKey
        }
        record.current = state
        try store.saveIdentity(message.identityKey, for: address)
        try store.storeSession(record, for: address)
        if let kyber = usedKyber {
            if kyber.isLastResort {
                try store.markKyberPreKeyUsed(id: kyber.id, signedPreKeyId: message.signedPreKeyId, baseKey: message.baseKey)
            } else {
                try store.removeKyberPreKey(id: kyber.id)
            }
        }
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
        guard message.messageVersion == state.version else {
            throw .versionMismatch(message: message.messageVersion, session: state.version)
        }
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
