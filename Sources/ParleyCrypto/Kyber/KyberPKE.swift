import CSodium

/// Scratch memory for one Kyber operation: the polynomials, the 32-bit accumulator and the
/// byte buffers live in one allocation, made when the operation starts and wiped (it holds
/// noise, secret-key coefficients and messages) and freed when it ends.
struct KyberWorkspace {
    typealias Poly = KyberArithmetic.Poly

    /// Polynomials 0..<8; poly 8 is the accumulator, 9 the matrix entry, which has
    /// `entrySlack` coefficients of room after it for the branch-free rejection sampler.
    static let polyCount = 10
    static let entrySlack = 16
    static let xofBytes = KyberSampling.xofSecondBytes
    static let noiseBytes = KyberParameters.noiseBytes
    /// Room for the KEM layer's own values (hashes, messages, keys, the re-encrypted
    /// ciphertext of decapsulation).
    static let kemBytes = 8 * 32 + KyberParameters.ciphertextBytes

    private static let polyOffset = 0
    private static let xofOffset = polyOffset + (polyCount * 256 + entrySlack) * 2
    private static let noiseOffset = xofOffset + xofBytes
    private static let kemOffset = noiseOffset + noiseBytes
    static let byteCount = kemOffset + kemBytes

    let base: UnsafeMutableRawPointer

    func poly(_ index: Int) -> Poly {
        (base + Self.polyOffset).assumingMemoryBound(to: Int16.self) + 256 * index
    }
    var accumulator: Poly { poly(8) }
    /// A matrix entry, with `entrySlack` writable coefficients after its 256.
    var entry: Poly { poly(9) }
    var xofBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base + Self.xofOffset, count: Self.xofBytes) }
    var noiseBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base + Self.noiseOffset, count: Self.noiseBytes) }
    /// 32-byte slot `index` (0..<8) of the KEM area.
    func slot(_ index: Int, count: Int = 32) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.kemOffset + 32 * index, count: count)
    }
    /// The KEM area's ciphertext-sized buffer.
    var ciphertextBuffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.kemOffset + 8 * 32, count: KyberParameters.ciphertextBytes)
    }

    /// Runs `body` with a zeroed workspace; wipes and frees it afterwards, however `body` ends.
    static func with<R, E: Error>(_ body: (KyberWorkspace) throws(E) -> R) throws(E) -> R {
        let base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        defer {
            sodium_memzero(base, byteCount)
            base.deallocate()
        }
        // The accumulator starts zero and `finishAccumulation` leaves it zero.
        return try body(KyberWorkspace(base: base))
    }
}

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
        let entry = w.entry, t = w.poly(5), e = w.poly(6)
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
        let entry = w.entry, u = w.poly(5), noise = w.poly(6), v = w.poly(7)
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
        let entry = w.entry, u = w.poly(5), v = w.poly(7)
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
