/// Sampling polynomials: uniform ones for the public matrix A (rejection sampling of SHAKE128
/// output, `Parse` in the specification) and noise from the centered binomial distribution
/// (`CBD_2` of SHAKE256 output, the PRF).
enum KyberSampling {
    typealias Poly = KyberArithmetic.Poly

    /// SHAKE128 rate: one Keccak block of output.
    static let xofBlockBytes = 168
    /// Output asked for first: 3 blocks = 336 candidates, of which about 273 are below q; this
    /// suffices for 256 coefficients in about 99.3% of the polynomials (as in the reference
    /// implementation's first squeeze).
    static let xofFirstBytes = 3 * xofBlockBytes
    /// Output asked for when the first was not enough: 5 blocks (560 candidates, never short in
    /// practice). Longer requests, if ever needed, grow by 2 blocks at a time.
    static let xofSecondBytes = 5 * xofBlockBytes

    /// The matrix entry A[i][j] (with `transposed`, A[j][i]) in the NTT domain:
    /// Parse(SHAKE128(rho || j || i)), or Parse(SHAKE128(rho || i || j)) transposed, exactly as
    /// the specification's `GenMatrix`. `rho` is public, so this may take variable time.
    ///
    /// OpenSSL 3.0 cannot squeeze a XOF incrementally, so the XOF is computed for
    /// `xofFirstBytes`; in the rare case that 256 coefficients were not accepted, it is computed
    /// again for more output, which extends the first (SHAKE output is prefix-stable), and
    /// sampling resumes where it stopped: the coefficients are those of one continuous stream,
    /// as the specification defines them. `buffer` holds at least `xofSecondBytes`.
    static func uniform(
        _ r: Poly, rho: UnsafeRawBufferPointer, i: Int, j: Int, transposed: Bool,
        keccak: inout KeccakContext, buffer: UnsafeMutableRawBufferPointer
    ) {
        var input: (UInt64, UInt64, UInt64, UInt64, UInt16) = (0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &input) { seed in
            seed.copyMemory(from: UnsafeRawBufferPointer(rebasing: rho[0..<32]))
            seed[32] = UInt8(transposed ? i : j)
            seed[33] = UInt8(transposed ? j : i)
            let xofInput = UnsafeRawBufferPointer(rebasing: seed[0..<34])

            var length = xofFirstBytes
            keccak.hash(.shake128, xofInput, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]))
            var filled = rejectionSample(r, filled: 0, from: UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
            guard filled < 256 else { return }

            // Rare: continue the same stream with a longer output.
            var consumed = length
            length = xofSecondBytes
            keccak.hash(.shake128, xofInput, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]))
            filled = rejectionSample(r, filled: filled, from: UnsafeRawBufferPointer(rebasing: buffer[consumed..<length]))
            var longer: [UInt8] = []
            while filled < 256 && keccak.ok {
                consumed = length
                length += 2 * xofBlockBytes
                longer = [UInt8](repeating: 0, count: length)
                longer.withUnsafeMutableBytes { out in
                    keccak.hash(.shake128, xofInput, into: out)
                    filled = rejectionSample(r, filled: filled, from: UnsafeRawBufferPointer(rebasing: out[consumed..<length]))
                }
            }
            // Only a failing libcrypto ends the loop early; the operation then throws.
            if filled < 256 { (r + filled).update(repeating: 0, count: 256 - filled) }
        }
    }

    /// Reads 12-bit candidates from `bytes` (two per 3 bytes, little-endian) into r[filled...],
    /// keeping those below q; returns the new count (at most 256). `bytes.count` is a multiple
    /// of 3. Every candidate is stored and the count advances only for accepted ones (no
    /// unpredictable branch), so up to two values land past r[255]: `r` has room for them
    /// (`KyberWorkspace.entrySlack`).
    static func rejectionSample(_ r: Poly, filled: Int, from bytes: UnsafeRawBufferPointer) -> Int {
        var count = filled
        var position = 0
        let q = UInt16(KyberParameters.q)
        while count < 256 && position + 3 <= bytes.count {
            let b0 = UInt16(bytes[position]), b1 = UInt16(bytes[position + 1]), b2 = UInt16(bytes[position + 2])
            position += 3
            let first = (b0 | b1 << 8) & 0xFFF
            let second = (b1 >> 4) | (b2 << 4)
            r[count] = Int16(bitPattern: first)
            count += first < q ? 1 : 0
            r[count] = Int16(bitPattern: second)
            count += second < q ? 1 : 0
        }
        return min(count, 256)
    }

    /// A noise polynomial CBD_2(PRF(seed, nonce)) = CBD_2(SHAKE256(seed || nonce)[0..<128]):
    /// coefficient i is (bits 4i + bits 4i+1) - (bits 4i+2 + bits 4i+3) of the output, in
    /// [-2, 2]. Constant time (the seed is secret). `buffer` holds at least 128 bytes.
    static func noise(
        _ r: Poly, seed: UnsafeRawBufferPointer, nonce: UInt8, keccak: inout KeccakContext,
        buffer: UnsafeMutableRawBufferPointer
    ) {
        var input: (UInt64, UInt64, UInt64, UInt64, UInt8) = (0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &input) { prfInput in
            prfInput.copyMemory(from: UnsafeRawBufferPointer(rebasing: seed[0..<32]))
            prfInput[32] = nonce
            keccak.hash(.shake256, UnsafeRawBufferPointer(rebasing: prfInput[0..<33]),
                        into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<KyberParameters.noiseBytes]))
            prfInput.initializeMemory(as: UInt8.self, repeating: 0)
        }
        let bytes = UnsafeRawBufferPointer(buffer)
        for i in 0..<32 {
            let t = bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian
            let d = (t & 0x5555_5555) &+ ((t >> 1) & 0x5555_5555)
            for j in 0..<8 {
                let a = Int16(truncatingIfNeeded: (d >> (4 * j)) & 3)
                let b = Int16(truncatingIfNeeded: (d >> (4 * j + 2)) & 3)
                r[8 * i + j] = a &- b
            }
        }
    }
}
