/// The Kyber1024 KEM of round 3 (specification v3.02, Algorithms 7-9), exactly as libcrux's
/// `kyber1024` module that libsignal uses for key type 0x08. It differs from ML-KEM-1024
/// (FIPS 203) in three places, all round-3 behaviour:
///
/// * key generation hashes the seed alone, (rho, sigma) = G(d) = SHA3-512(d), not G(d || k);
/// * encapsulation hashes its randomness first, m' = H(m) = SHA3-256(m), and derives the shared
///   secret from the ciphertext: K = KDF(K' || H(c)) = SHAKE256(K' || SHA3-256(c), 32);
/// * implicit rejection goes through the same KDF.
///
/// Implicit rejection is libcrux's, which is not the round-3 reference's: on a ciphertext that
/// does not re-encrypt, libcrux returns KDF(PRF(z || c) || H(c)) with PRF(z || c) =
/// SHAKE256(z || c, 32) (its `Kyber` variant applies the KDF to the ML-KEM-style rejection
/// value), where the reference returns KDF(z || H(c)). Honest ciphertexts, and so every
/// known-answer test, give the same secret either way; only the pseudorandom value of a
/// rejected ciphertext differs, and Parley gives libsignal's.
///
/// Key generation takes a 64-byte seed d || z (libcrux `generate_key_pair(randomness)`):
/// d seeds the IND-CPA key pair, z is the implicit-rejection secret. Secret key layout:
/// s_hat (1536) || pk (1568) || H(pk) (32) || z (32).
///
/// Everything that touches secrets runs in constant time: decapsulation computes both K' and
/// the rejection value, compares the re-encryption with the ciphertext over all 1568 bytes and
/// selects by mask. The
/// workspace and every intermediate secret are wiped before returning.
enum Kyber1024 {
    private typealias P = KyberParameters

    /// (pk, sk) from the seed d || z.
    static func generateKeyPair(
        seed: UnsafeRawBufferPointer, publicKey pk: UnsafeMutableRawBufferPointer, secretKey sk: UnsafeMutableRawBufferPointer
    ) throws(KEMError) {
        precondition(seed.count == P.keyGenerationSeedBytes && pk.count == P.publicKeyBytes && sk.count == P.secretKeyBytes)
        guard var keccak = KeccakContext() else { throw .hashFailure }
        KyberWorkspace.with { w in
            KyberPKE.keyGeneration(
                seed: UnsafeRawBufferPointer(rebasing: seed[0..<32]), publicKey: pk,
                secretKey: UnsafeMutableRawBufferPointer(rebasing: sk[0..<P.pkeSecretKeyBytes]), keccak: &keccak, workspace: w)
        }
        var offset = P.pkeSecretKeyBytes
        UnsafeMutableRawBufferPointer(rebasing: sk[offset..<(offset + P.publicKeyBytes)]).copyMemory(from: UnsafeRawBufferPointer(pk))
        offset += P.publicKeyBytes
        keccak.hash(.sha3_256, UnsafeRawBufferPointer(pk), into: UnsafeMutableRawBufferPointer(rebasing: sk[offset..<(offset + 32)]))
        offset += 32
        UnsafeMutableRawBufferPointer(rebasing: sk[offset..<(offset + 32)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: seed[32..<64]))
        guard keccak.ok else {
            sk.initializeMemory(as: UInt8.self, repeating: 0)
            throw .hashFailure
        }
    }

    /// Encapsulation to pk with the 32-byte randomness m: writes the ciphertext (1568) and the
    /// shared secret (32).
    static func encapsulate(
        publicKey pk: UnsafeRawBufferPointer, randomness m: UnsafeRawBufferPointer,
        ciphertext c: UnsafeMutableRawBufferPointer, sharedSecret: UnsafeMutableRawBufferPointer
    ) throws(KEMError) {
        precondition(pk.count == P.publicKeyBytes && m.count == P.encapsulationRandomnessBytes
            && c.count == P.ciphertextBytes && sharedSecret.count == P.sharedSecretBytes)
        guard var keccak = KeccakContext() else { throw .hashFailure }
        KyberWorkspace.with { w in
            // slot 0: m' = H(m); slot 1: H(pk); slots 2-3: (K', r) = G(m' || H(pk)); slot 4: H(c)
            let messageAndKeyHash = w.slot(0, count: 64)
            keccak.hash(.sha3_256, m, into: w.slot(0))
            keccak.hash(.sha3_256, pk, into: w.slot(1))
            let keyAndCoins = w.slot(2, count: 64)
            keccak.hash(.sha3_512, UnsafeRawBufferPointer(messageAndKeyHash), into: keyAndCoins)
            KyberPKE.encrypt(
                publicKey: pk, message: UnsafeRawBufferPointer(w.slot(0)), coins: UnsafeRawBufferPointer(w.slot(3)),
                ciphertext: c, keccak: &keccak, workspace: w)
            keccak.hash(.sha3_256, UnsafeRawBufferPointer(c), into: w.slot(4))
            keccak.hash(.shake256, UnsafeRawBufferPointer(w.slot(2)), UnsafeRawBufferPointer(w.slot(4)), into: sharedSecret)
        }
        guard keccak.ok else {
            sharedSecret.initializeMemory(as: UInt8.self, repeating: 0)
            throw .hashFailure
        }
    }

    /// Decapsulation of the 1568-byte ciphertext with the 3168-byte secret key: the shared
    /// secret, or (implicit rejection) a pseudorandom value derived from z and the ciphertext
    /// when the ciphertext is not the honest encryption of what it decrypts to. Never fails on
    /// the ciphertext's content.
    static func decapsulate(
        secretKey sk: UnsafeRawBufferPointer, ciphertext c: UnsafeRawBufferPointer, sharedSecret: UnsafeMutableRawBufferPointer
    ) throws(KEMError) {
        precondition(sk.count == P.secretKeyBytes && c.count == P.ciphertextBytes && sharedSecret.count == P.sharedSecretBytes)
        let pkeSecretKey = UnsafeRawBufferPointer(rebasing: sk[0..<P.pkeSecretKeyBytes])
        var offset = P.pkeSecretKeyBytes
        let pk = UnsafeRawBufferPointer(rebasing: sk[offset..<(offset + P.publicKeyBytes)])
        offset += P.publicKeyBytes
        let publicKeyHash = UnsafeRawBufferPointer(rebasing: sk[offset..<(offset + 32)])
        offset += 32
        let z = UnsafeRawBufferPointer(rebasing: sk[offset..<(offset + 32)])

        guard var keccak = KeccakContext() else { throw .hashFailure }
        KyberWorkspace.with { w in
            // slot 0: m'; slots 2-3: (K', r') = G(m' || h); slot 4: H(c); slot 5: PRF(z || c);
            // c' in ciphertextBuffer
            KyberPKE.decrypt(secretKey: pkeSecretKey, ciphertext: c, message: w.slot(0), workspace: w)
            let keyAndCoins = w.slot(2, count: 64)
            keccak.hash(.sha3_512, UnsafeRawBufferPointer(w.slot(0)), publicKeyHash, into: keyAndCoins)
            keccak.hash(.shake256, z, c, into: w.slot(5))
            KyberPKE.encrypt(
                publicKey: pk, message: UnsafeRawBufferPointer(w.slot(0)), coins: UnsafeRawBufferPointer(w.slot(3)),
                ciphertext: w.ciphertextBuffer, keccak: &keccak, workspace: w)
            let rejected = differenceMask(c, UnsafeRawBufferPointer(w.ciphertextBuffer))
            select(w.slot(2), UnsafeRawBufferPointer(w.slot(5)), where: rejected)
            keccak.hash(.sha3_256, c, into: w.slot(4))
            keccak.hash(.shake256, UnsafeRawBufferPointer(w.slot(2)), UnsafeRawBufferPointer(w.slot(4)), into: sharedSecret)
        }
        guard keccak.ok else {
            sharedSecret.initializeMemory(as: UInt8.self, repeating: 0)
            throw .hashFailure
        }
    }

    /// 0xFF when a and b (equal lengths, a multiple of 8) differ anywhere, 0 when equal; reads
    /// every byte whatever the contents.
    static func differenceMask(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> UInt8 {
        precondition(a.count == b.count && a.count % 8 == 0)
        var difference: UInt64 = 0
        for offset in stride(from: 0, to: a.count, by: 8) {
            difference |= a.loadUnaligned(fromByteOffset: offset, as: UInt64.self) ^ b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        }
        // (d | -d) has its top bit set exactly when d != 0.
        let nonZero = (difference | (0 &- difference)) >> 63
        return 0 &- UInt8(truncatingIfNeeded: nonZero)
    }

    /// destination = mask == 0xFF ? source : destination, byte by byte by mask.
    static func select(_ destination: UnsafeMutableRawBufferPointer, _ source: UnsafeRawBufferPointer, where mask: UInt8) {
        for i in 0..<destination.count {
            destination[i] ^= mask & (destination[i] ^ source[i])
        }
    }
}
