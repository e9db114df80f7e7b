import ParleyCrypto

/// X3DH key agreement (libsignal v3, no Kyber), producing the first ratchet state.
///
///   master = 0xFF*32 || DH(IK_A, SPK_B) || DH(EK_A, IK_B) || DH(EK_A, SPK_B) [|| DH(EK_A, OPK_B)]
///   RK || CK = HKDF(master, salt = 0*32, info = "WhisperText", 64)
enum X3DH {
    static let info: [UInt8] = Array("WhisperText".utf8)

    private static func deriveInitialKeys(_ agreements: [SecretBytes]) throws(ProtocolError) -> (RootKey, ChainKey) {
        let master = SecretBytes(count: 32 * (agreements.count + 1)) { out in
            guard let base = out.baseAddress else { return }
            base.initializeMemory(as: UInt8.self, repeating: 0xFF, count: 32)
            for (i, dh) in agreements.enumerated() {
                dh.withBytes { src in
                    if let s = src.baseAddress { (base + 32 * (i + 1)).copyMemory(from: s, byteCount: 32) }
                }
            }
        }
        do {
            let derived = try HKDF.deriveSecret(ikm: master, salt: [UInt8](), info: info, length: 64)
            return (RootKey(derived.slice(0..<32)), ChainKey(key: derived.slice(32..<64), index: 0))
        } catch {
            throw .crypto(error)
        }
    }

    /// The initiator's side. Draws the first sending ratchet key from `random` (after the base
    /// key, which the caller drew).
    static func aliceSession(
        ourIdentity: IdentityKeyPair, ourBaseKey: PrivateKey, theirIdentity: IdentityKey,
        theirSignedPreKey: PublicKey, theirOneTimePreKey: PublicKey?, random: any RandomSource
    ) throws(ProtocolError) -> SessionState {
        do {
            var agreements = [
                try ourIdentity.privateKey.agreement(with: theirSignedPreKey),
                try ourBaseKey.agreement(with: theirIdentity.publicKey),
                try ourBaseKey.agreement(with: theirSignedPreKey),
            ]
            if let otk = theirOneTimePreKey { agreements.append(try ourBaseKey.agreement(with: otk)) }
            let (rootKey, chainKey) = try deriveInitialKeys(agreements)
            let sendingRatchetKey = try PrivateKey.generate(using: random)
            let (sendingRoot, sendingChain) = try rootKey.createChain(
                theirRatchetKey: theirSignedPreKey, ourRatchetKey: sendingRatchetKey)
            var state = SessionState(
                localIdentity: ourIdentity.identityKey, remoteIdentity: theirIdentity, rootKey: sendingRoot,
                senderChain: SenderChain(ratchetKey: sendingRatchetKey, chainKey: sendingChain))
            state.addReceiverChain(ReceiverChain(ratchetKey: theirSignedPreKey, chainKey: chainKey))
            state.aliceBaseKey = ourBaseKey.publicKey
            return state
        } catch let error as ProtocolError {
            throw error
        } catch let error as CryptoError {
            throw .crypto(error)
        } catch {
            throw .crypto(.cipherFailure)
        }
    }

    /// The responder's side: the signed prekey is Bob's first ratchet key; no randomness.
    /// The base key must be canonical (`PublicKey.isCanonical`, as libsignal checks it since
    /// 2025-09): a torsion component or a non-canonical encoding would give the same secrets
    /// as the honest key it was derived from, that is, replay a first message.
    static func bobSession(
        ourIdentity: IdentityKeyPair, ourSignedPreKey: PrivateKey, ourOneTimePreKey: PrivateKey?,
        theirIdentity: IdentityKey, theirBaseKey: PublicKey
    ) throws(ProtocolError) -> SessionState {
        guard theirBaseKey.isCanonical else { throw .invalidKey("base key is not canonical") }
        do {
            var agreements = [
                try ourSignedPreKey.agreement(with: theirIdentity.publicKey),
                try ourIdentity.privateKey.agreement(with: theirBaseKey),
                try ourSignedPreKey.agreement(with: theirBaseKey),
            ]
            if let otk = ourOneTimePreKey { agreements.append(try otk.agreement(with: theirBaseKey)) }
            let (rootKey, chainKey) = try deriveInitialKeys(agreements)
            var state = SessionState(
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
