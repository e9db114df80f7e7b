/// The IND-CPA public-key encryption of Kyber (specification §4, Algorithms 4-6), for k = 4.
/// Byte layouts: public key Encode_12(t_hat) || rho (1568), secret key Encode_12(s_hat) (1536),
/// ciphertext Encode_11(Compress(u, 11)) || Encode_5(Compress(v, 5)) (1408 + 160).
enum KyberPKE {
    typealias Poly = KyberArithmetic.Poly
    private typealias P = KyberParameters
    private typealias A = KyberArithmetic

    /// Key generation from the 32-byte seed d: (rho, sigma) = SHA3-512(d); s and e from
    /// CBD_2(PRF(sigma, 0..3)) and CBD_2(PRF(sigma, 4..7)); t_hat = A s_hat + e_hat.
    static func keyGeneration(
        seed d: UnsafeRawBufferPointer, publicKey pk: UnsafeMutableRawBufferPointer,
        secretKey sk: UnsafeMutableRawBufferPointer, keccak: inout KeccakContext, workspace w: KyberWorkspace
    ) {
        let rhoSigma = w.slot(6, count: 64)
        keccak.hash(.sha3_512, d, into: rhoSigma)
        let rho = UnsafeRawBufferPointer(rebasing: rhoSigma[0..<32])
        let sigma = UnsafeRawBufferPointer(rebasing: rhoSigma[32..<64])

        func sHat(_ i: Int) -> Poly { w.poly(i) }
        let entry = w.entry, t = w.poly(4), e = w.poly(5)
        for i in 0..<P.k {
            KyberSampling.noise(sHat(i), seed: sigma, nonce: UInt8(i), keccak: &keccak, buffer: w.noiseBuffer)
            A.ntt(sHat(i))
        }
        for i in 0..<P.k {
            for j in 0..<P.k {
                KyberSampling.uniform(entry, rho: rho, i: i, j: j, transposed: false, keccak: &keccak, buffer: w.xofBuffer)
                A.multiplyAccumulate(w.accumulator, entry, sHat(j))
            }
            A.finishAccumulation(w.accumulator, into: t)
            for c in 0..<256 { t[c] = A.montgomeryMultiply(t[c], A.montgomerySquared) }  // out of the Montgomery domain
            KyberSampling.noise(e, seed: sigma, nonce: UInt8(P.k + i), keccak: &keccak, buffer: w.noiseBuffer)
            A.ntt(e)
            A.add(t, e)
            A.reduce(t)
            KyberEncoding.encode12(t, into: UnsafeMutableRawBufferPointer(rebasing: pk[(P.polyBytes * i)..<(P.polyBytes * (i + 1))]))
            KyberEncoding.encode12(sHat(i), into: UnsafeMutableRawBufferPointer(rebasing: sk[(P.polyBytes * i)..<(P.polyBytes * (i + 1))]))
        }
        UnsafeMutableRawBufferPointer(rebasing: pk[P.polyVecBytes..<P.publicKeyBytes]).copyMemory(from: rho)
    }

    /// Encryption of the 32-byte message m with the 32 bytes of coins r: r from
    /// CBD_2(PRF(coins, 0..3)), e1 from 4..7, e2 from 8; u = NTT^-1(A^T r_hat) + e1,
    /// v = NTT^-1(t_hat . r_hat) + e2 + Decompress_1(m). Constant time in m and the coins.
    static func encrypt(
        publicKey pk: UnsafeRawBufferPointer, message m: UnsafeRawBufferPointer, coins: UnsafeRawBufferPointer,
        ciphertext c: UnsafeMutableRawBufferPointer, keccak: inout KeccakContext, workspace w: KyberWorkspace
    ) {
        let rho = UnsafeRawBufferPointer(rebasing: pk[P.polyVecBytes..<P.publicKeyBytes])
        func rHat(_ i: Int) -> Poly { w.poly(i) }
        let entry = w.entry, u = w.poly(4), noise = w.poly(5), v = w.poly(6)
        for i in 0..<P.k {
            KyberSampling.noise(rHat(i), seed: coins, nonce: UInt8(i), keccak: &keccak, buffer: w.noiseBuffer)
            A.ntt(rHat(i))
        }
        let uBytes = P.polyVecCompressedBytes / P.k
        for i in 0..<P.k {
            for j in 0..<P.k {
                KyberSampling.uniform(entry, rho: rho, i: i, j: j, transposed: true, keccak: &keccak, buffer: w.xofBuffer)
                A.multiplyAccumulate(w.accumulator, entry, rHat(j))
            }
            A.finishAccumulation(w.accumulator, into: u)
            A.inverseNTT(u)
            KyberSampling.noise(noise, seed: coins, nonce: UInt8(P.k + i), keccak: &keccak, buffer: w.noiseBuffer)
            A.add(u, noise)
            A.reduce(u)
            KyberEncoding.compressEncode11(u, into: UnsafeMutableRawBufferPointer(rebasing: c[(uBytes * i)..<(uBytes * (i + 1))]))
        }
        for j in 0..<P.k {
            KyberEncoding.decode12(UnsafeRawBufferPointer(rebasing: pk[(P.polyBytes * j)..<(P.polyBytes * (j + 1))]), into: entry)
            A.multiplyAccumulate(w.accumulator, entry, rHat(j))
        }
        A.finishAccumulation(w.accumulator, into: v)
        A.inverseNTT(v)
        KyberSampling.noise(noise, seed: coins, nonce: UInt8(2 * P.k), keccak: &keccak, buffer: w.noiseBuffer)
        A.add(v, noise)
        KyberEncoding.messageToPoly(m, into: noise)
        A.add(v, noise)
        A.reduce(v)
        KyberEncoding.compressEncode5(v, into: UnsafeMutableRawBufferPointer(rebasing: c[P.polyVecCompressedBytes..<P.ciphertextBytes]))
    }

    /// Decryption: m = Encode_1(Compress_1(v - NTT^-1(s_hat . NTT(u)))). Constant time in the
    /// secret key (and so in m).
    static func decrypt(
        secretKey sk: UnsafeRawBufferPointer, ciphertext c: UnsafeRawBufferPointer,
        message m: UnsafeMutableRawBufferPointer, workspace w: KyberWorkspace
    ) {
        let uBytes = P.polyVecCompressedBytes / P.k
        let entry = w.entry, u = w.poly(4), v = w.poly(6)
        for i in 0..<P.k {
            KyberEncoding.decodeDecompress11(UnsafeRawBufferPointer(rebasing: c[(uBytes * i)..<(uBytes * (i + 1))]), into: u)
            A.ntt(u)
            KyberEncoding.decode12(UnsafeRawBufferPointer(rebasing: sk[(P.polyBytes * i)..<(P.polyBytes * (i + 1))]), into: entry)
            A.multiplyAccumulate(w.accumulator, entry, u)
        }
        A.finishAccumulation(w.accumulator, into: u)
        A.inverseNTT(u)
        KyberEncoding.decodeDecompress5(UnsafeRawBufferPointer(rebasing: c[P.polyVecCompressedBytes..<P.ciphertextBytes]), into: v)
        A.subtract(from: v, u)
        A.reduce(u)
        KyberEncoding.polyToMessage(u, into: m)
    }
}
