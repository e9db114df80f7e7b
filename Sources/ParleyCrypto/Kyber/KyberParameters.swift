/// CRYSTALS-Kyber, round 3 (specification v3.02, 2021-08-04), the parameter set Kyber1024:
/// the ring R_q = Z_q[X]/(X^256 + 1) with q = 3329, module rank k = 4, centered binomial noise
/// with eta1 = eta2 = 2, ciphertext compression to du = 11 and dv = 5 bits.
///
/// Parley implements only Kyber1024 (libsignal's key type 0x08). The IND-CPA layer
/// (`KyberPKE`) is the same for ML-KEM-1024 (FIPS 203), which differs only in the KEM transform
/// and in key generation's G(d || k), so a later ML-KEM-1024 (0x0A) reuses everything below the
/// KEM.
enum KyberParameters {
    /// Coefficients per polynomial.
    static let n = 256
    /// The modulus.
    static let q: Int32 = 3329
    /// Module rank (Kyber1024).
    static let k = 4
    /// Bits per compressed coefficient of u and of v.
    static let du = 11
    static let dv = 5

    /// Seeds, hashes, messages, shared secrets.
    static let symBytes = 32
    /// One polynomial, 12 bits per coefficient.
    static let polyBytes = 384
    static let polyVecBytes = k * polyBytes                                  // 1536
    static let polyVecCompressedBytes = k * n * du / 8                      // 1408
    static let polyCompressedBytes = n * dv / 8                             // 160
    /// Bytes of PRF output per noise polynomial: 64 * eta for eta = 2.
    static let noiseBytes = 128

    /// IND-CPA public key t_hat || rho = the KEM public key.
    static let publicKeyBytes = polyVecBytes + symBytes                      // 1568
    /// IND-CPA secret key s_hat.
    static let pkeSecretKeyBytes = polyVecBytes                              // 1536
    /// KEM secret key s_hat || pk || H(pk) || z.
    static let secretKeyBytes = pkeSecretKeyBytes + publicKeyBytes + 2 * symBytes  // 3168
    static let ciphertextBytes = polyVecCompressedBytes + polyCompressedBytes     // 1568
    static let sharedSecretBytes = 32
    /// Key generation's seed d || z.
    static let keyGenerationSeedBytes = 2 * symBytes
    /// Encapsulation's randomness m.
    static let encapsulationRandomnessBytes = symBytes
}
