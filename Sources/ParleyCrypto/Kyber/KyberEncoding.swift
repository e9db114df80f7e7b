/// Byte encodings of polynomials (`Encode_l` / `Decode_l`: l-bit values packed little-endian,
/// least significant bit first) and the lossy compression of coefficients
/// (`Compress_q(x, d) = round(2^d / q * x) mod 2^d`, `Decompress_q(y, d) = round(q / 2^d * y)`).
///
/// Compression is applied to secret-dependent values (the message in decryption, u and v in
/// the re-encryption of decapsulation), so it must not divide by q: a division's latency
/// depends on its operands on many CPUs (KyberSlash, 2023-2024). It multiplies by a constant
/// and shifts instead (`compress`), which is exact for every input it is used on.
enum KyberEncoding {
    typealias Poly = KyberArithmetic.Poly

    /// ceil(2^35 / q): floor(n / q) = (n * compressMultiplier) >> 35 for every n < 2^35 / q
    /// (about 10.3 million), since the multiplier exceeds 2^35 / q by less than one. The largest
    /// n used is (q-1) * 2^11 + 1664 < 6.9 million (d = 11).
    static let compressMultiplier: UInt64 = 10_321_340
    static let compressShift: UInt64 = 35

    /// Compress_q(x, d) for x in [0, q): floor((x * 2^d + (q-1)/2) / q) mod 2^d, which is the
    /// rounding of x * 2^d / q (ties cannot occur: q is odd), without division.
    @inline(__always)
    static func compress(_ x: Int16, bits d: Int) -> UInt32 {
        let n = UInt64(UInt16(bitPattern: x)) << UInt64(d) &+ 1664
        return UInt32(truncatingIfNeeded: (n &* compressMultiplier) >> compressShift) & ((1 << UInt32(d)) &- 1)
    }

    /// Decompress_q(y, d) = floor((y * q + 2^(d-1)) / 2^d), in [0, q).
    @inline(__always)
    static func decompress(_ y: UInt32, bits d: Int) -> Int16 {
        Int16(truncatingIfNeeded: (y &* UInt32(KyberParameters.q) &+ (1 << UInt32(d - 1))) >> UInt32(d))
    }

    /// Encode_12 of a polynomial whose coefficients are in (-q, q): each is brought to [0, q)
    /// first. 384 bytes: coefficients 2i and 2i+1 fill bytes 3i..3i+2, low bits first.
    static func encode12(_ a: Poly, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= KyberParameters.polyBytes)
        for i in 0..<128 {
            let t0 = UInt16(bitPattern: KyberArithmetic.toCanonical(a[2 * i]))
            let t1 = UInt16(bitPattern: KyberArithmetic.toCanonical(a[2 * i + 1]))
            out[3 * i] = UInt8(truncatingIfNeeded: t0)
            out[3 * i + 1] = UInt8(truncatingIfNeeded: (t0 >> 8) | (t1 << 4))
            out[3 * i + 2] = UInt8(truncatingIfNeeded: t1 >> 4)
        }
    }

    /// Decode_12: coefficients in [0, 4096). A public key need not be canonical (libsignal and
    /// the reference implementation do not check it); values up to 4095 are used as they are,
    /// as the reference does, and the arithmetic's bounds allow for them.
    static func decode12(_ bytes: UnsafeRawBufferPointer, into r: Poly) {
        precondition(bytes.count >= KyberParameters.polyBytes)
        for i in 0..<128 {
            let b0 = Int16(bytes[3 * i]), b1 = Int16(bytes[3 * i + 1]), b2 = Int16(bytes[3 * i + 2])
            r[2 * i] = b0 | ((b1 & 0x0F) << 8)
            r[2 * i + 1] = (b1 >> 4) | (b2 << 4)
        }
    }

    /// Encode_11(Compress_q(a, 11)) of a polynomial with coefficients in (-q, q): 352 bytes,
    /// 8 coefficients (88 bits) per 11 bytes.
    static func compressEncode11(_ a: Poly, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 352)
        for g in 0..<32 {
            var low: UInt64 = 0   // bits 0..<64 of the group
            var high: UInt64 = 0  // bits 64..<88
            for j in 0..<8 {
                let t = UInt64(compress(KyberArithmetic.toCanonical(a[8 * g + j]), bits: 11))
                let shift = 11 * j
                if shift < 64 {
                    low |= t << UInt64(shift)
                    if shift + 11 > 64 { high |= t >> UInt64(64 - shift) }  // j = 5 straddles the words
                } else {
                    high |= t << UInt64(shift - 64)
                }
            }
            let o = 11 * g
            for b in 0..<8 { out[o + b] = UInt8(truncatingIfNeeded: low >> UInt64(8 * b)) }
            for b in 0..<3 { out[o + 8 + b] = UInt8(truncatingIfNeeded: high >> UInt64(8 * b)) }
        }
    }

    /// Decompress_q(Decode_11(bytes), 11): coefficients in [0, q).
    static func decodeDecompress11(_ bytes: UnsafeRawBufferPointer, into r: Poly) {
        precondition(bytes.count >= 352)
        for g in 0..<32 {
            let o = 11 * g
            var low: UInt64 = 0
            var high: UInt64 = 0
            for b in 0..<8 { low |= UInt64(bytes[o + b]) << UInt64(8 * b) }
            for b in 0..<3 { high |= UInt64(bytes[o + 8 + b]) << UInt64(8 * b) }
            for j in 0..<8 {
                let shift = 11 * j
                var t: UInt64
                if shift < 64 {
                    t = low >> UInt64(shift)
                    if shift + 11 > 64 { t |= high << UInt64(64 - shift) }
                } else {
                    t = high >> UInt64(shift - 64)
                }
                r[8 * g + j] = decompress(UInt32(truncatingIfNeeded: t & 0x7FF), bits: 11)
            }
        }
    }

    /// Encode_5(Compress_q(a, 5)) of a polynomial with coefficients in (-q, q): 160 bytes,
    /// 8 coefficients (40 bits) per 5 bytes.
    static func compressEncode5(_ a: Poly, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 160)
        for g in 0..<32 {
            var word: UInt64 = 0
            for j in 0..<8 {
                word |= UInt64(compress(KyberArithmetic.toCanonical(a[8 * g + j]), bits: 5)) << UInt64(5 * j)
            }
            for b in 0..<5 { out[5 * g + b] = UInt8(truncatingIfNeeded: word >> UInt64(8 * b)) }
        }
    }

    /// Decompress_q(Decode_5(bytes), 5): coefficients in [0, q).
    static func decodeDecompress5(_ bytes: UnsafeRawBufferPointer, into r: Poly) {
        precondition(bytes.count >= 160)
        for g in 0..<32 {
            var word: UInt64 = 0
            for b in 0..<5 { word |= UInt64(bytes[5 * g + b]) << UInt64(8 * b) }
            for j in 0..<8 {
                r[8 * g + j] = decompress(UInt32(truncatingIfNeeded: (word >> UInt64(5 * j)) & 0x1F), bits: 5)
            }
        }
    }

    /// Decompress_q(Decode_1(m), 1): bit i of the 32-byte message becomes (q+1)/2 or 0, by mask.
    static func messageToPoly(_ message: UnsafeRawBufferPointer, into r: Poly) {
        for i in 0..<32 {
            let byte = Int16(message[i])
            for j in 0..<8 {
                let mask = 0 &- ((byte >> Int16(j)) & 1)
                r[8 * i + j] = mask & Int16((KyberParameters.q + 1) / 2)
            }
        }
    }

    /// Encode_1(Compress_q(a, 1)) of a polynomial with coefficients in (-q, q): 32 bytes.
    static func polyToMessage(_ a: Poly, into out: UnsafeMutableRawBufferPointer) {
        for i in 0..<32 {
            var byte: UInt32 = 0
            for j in 0..<8 {
                byte |= compress(KyberArithmetic.toCanonical(a[8 * i + j]), bits: 1) << UInt32(j)
            }
            out[i] = UInt8(truncatingIfNeeded: byte)
        }
    }
}
