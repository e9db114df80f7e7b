import ParleyCrypto

/// The initial key agreement, producing the first ratchet state: PQXDH (version 4) when the
/// responder published a Kyber prekey, X3DH (version 3, libsignal's pre-Kyber agreement) when it
/// did not. X3DH is PQXDH without the KEM term and with another HKDF label:
///
///   IKM = 0xFF*32 || DH(IK_A, SPK_B) || DH(EK_A, IK_B) || DH(EK_A, SPK_B) [|| DH(EK_A, OPK_B)] [|| SS]
///   version 4: RK || CK || (unused) = HKDF(IKM, salt = none, "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", 96)
///   version 3: RK || CK             = HKDF(IKM, salt = none, "WhisperText", 64)
///
/// SS is the Kyber1024 shared secret Alice encapsulates to Bob's Kyber prekey. Bytes 64..96 of the
/// version-4 output are libsignal's SPQR authentication key, unused without SPQR.
enum PQXDH {
    static let x3dhInfo: [UInt8] = Array("WhisperText".utf8)
    static let pqxdhInfo: [UInt8] = Array("WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024".utf8)
    /// HKDF output length of PQXDH: root key, chain key, and libsignal's SPQR key (unused here).
    static let pqxdhOutputLength = 96

    private static func deriveInitialKeys(_ agreements: [SecretBytes], kemSecret: SecretBytes?) throws(ProtocolError) -> (RootKey, ChainKey) {
        let parts = agreements + (kemSecret.map { [$0] } ?? [])
        let count = 32 + parts.reduce(0) { $0 + $1.count }
        let master = SecretBytes(count: count) { out in
            guard let base = out.baseAddress else { return }
            base.initializeMemory(as: UInt8.self, repeating: 0xFF, count: 32)
            var offset = 32
            for part in parts {
                part.withBytes { src in
                    if let s = src.baseAddress { (base + offset).copyMemory(from: s, byteCount: src.count) }
                }
                offset += part.count
            }
        }
        do {
            let derived = kemSecret == nil
                ? try HKDF.deriveSecret(ikm: master, salt: [UInt8](), info: x3dhInfo, length: 64)
                : try HKDF.deriveSecret(ikm: master, salt: [UInt8](), info: pqxdhInfo, length: pqxdhOutputLength)
            return (RootKey(derived.slice(0..<32)), ChainKey(key: derived.slice(32..<64), index: 0))
        } catch {
            throw .crypto(error)
        }
    }

    /// The initiator's side. With `theirKyberPreKey` (PQXDH), encapsulates to it (one draw, the
    /// 32-byte KEM randomness) after the DH agreements; then draws the first sending ratchet key.
    /// The base key was drawn by the caller, first. Returns the state and, for PQXDH, the Kyber
    /// ciphertext to send.
    static func aliceSession(
        ourIdentity: IdentityKeyPair, ourBaseKey: PrivateKey, theirIdentity: IdentityKey,
        theirSignedPreKey: PublicKey, theirOneTimePreKey: PublicKey?, theirKyberPreKey: KEMPublicKey?, random: any RandomSource
    ) throws(ProtocolError) -> (state: SessionState, kyberCiphertext: KEMCiphertext?) {
        do {
            var agreements = [
                try ourIdentity.privateKey.agreement(with: theirSignedPreKey),
                try ourBaseKey.agreement(with: theirIdentity.publicKey),
                try ourBaseKey.agreement(with: theirSignedPreKey),
            ]
            if let otk = theirOneTimePreKey { agreements.append(try ourBaseKey.agreement(with: otk)) }
            var kem: (sharedSecret: SecretBytes, ciphertext: KEMCiphertext)? = nil
            if let theirKyberPreKey {
                do { kem = try theirKyberPreKey.encapsulate(using: random) } catch { throw ProtocolError.invalidKyber("encapsulation: \(error)") }
            }
            let (rootKey, chainKey) = try deriveInitialKeys(agreements, kemSecret: kem?.sharedSecret)
            let sendingRatchetKey = try PrivateKey.generate(using: random)
            let (sendingRoot, sendingChain) = try rootKey.createChain(
                theirRatchetKey: theirSignedPreKey, ourRatchetKey: sendingRatchetKey)
            var state = SessionState(
                version: kem == nil ? Limits.preKyberVersion : Limits.kyberVersion,
                localIdentity: ourIdentity.identityKey, remoteIdentity: theirIdentity, rootKey: sendingRoot,
                senderChain: SenderChain(ratchetKey: sendingRatchetKey, chainKey: sendingChain))
            state.addReceiverChain(ReceiverChain(ratchetKey: theirSignedPreKey, chainKey: chainKey))
            state.aliceBaseKey = ourBaseKey.publicKey
            return (state, kem?.ciphertext)
        } catch let error as ProtocolError {
            throw error
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.cipherFailure)
        }
    }

    /// The responder's side: the signed prekey is Bob's first ratchet key; no randomness. With
    /// `ourKyberPreKey` and `kyberCiphertext` (PQXDH), the ciphertext is decapsulated after the DH
    /// agreements; a ciphertext that was not made for this key decapsulates to another secret
    /// (implicit rejection), so the keys differ and the first message's MAC fails.
    ///
    /// The base key must be canonical (`PublicKey.isCanonical`, as libsignal checks it since
    /// 2025-09): a torsion component or a non-canonical encoding would give the same secrets
    /// as the honest key it was derived from, that is, replay a first message. The caller checks
    /// it first (the order of checks); this guard keeps the function safe on its own.
    static func bobSession(
        ourIdentity: IdentityKeyPair, ourSignedPreKey: PrivateKey, ourOneTimePreKey: PrivateKey?,
        ourKyberPreKey: KEMSecretKey?, kyberCiphertext: KEMCiphertext?,
        theirIdentity: IdentityKey, theirBaseKey: PublicKey
    ) throws(ProtocolError) -> SessionState {
        guard theirBaseKey.isCanonical else { throw .invalidBaseKey }
        guard (ourKyberPreKey == nil) == (kyberCiphertext == nil) else {
            throw .invalidKyber("a Kyber prekey without a ciphertext, or the reverse")
        }
        do {
            var agreements = [
                try ourSignedPreKey.agreement(with: theirIdentity.publicKey),
                try ourIdentity.privateKey.agreement(with: theirBaseKey),
                try ourSignedPreKey.agreement(with: theirBaseKey),
            ]
            if let otk = ourOneTimePreKey { agreements.append(try otk.agreement(with: theirBaseKey)) }
            var kemSecret: SecretBytes? = nil
            if let ourKyberPreKey, let kyberCiphertext {
                do { kemSecret = try ourKyberPreKey.decapsulate(kyberCiphertext) } catch {
                    throw ProtocolError.invalidKyber("Kyber ciphertext: \(error.reason ?? "\(error)")")
                }
            }
            let (rootKey, chainKey) = try deriveInitialKeys(agreements, kemSecret: kemSecret)
            var state = SessionState(
                version: kemSecret == nil ? Limits.preKyberVersion : Limits.kyberVersion,
                localIdentity: ourIdentity.identityKey, remoteIdentity: theirIdentity, rootKey: rootKey,
                senderChain: SenderChain(ratchetKey: ourSignedPreKey, chainKey: chainKey))
            state.aliceBaseKey = theirBaseKey
            return state
        } catch let error as ProtocolError {
            throw error
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.cipherFailure)
        }
    }
}
