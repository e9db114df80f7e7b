/// Arithmetic in R_q = Z_q[X]/(X^256 + 1), q = 3329: Montgomery and Barrett reduction, the
/// number-theoretic transform and multiplication in the NTT domain.
///
/// A polynomial is 256 `Int16` coefficients behind an `UnsafeMutablePointer` into an
/// operation's workspace (`KyberWorkspace`); nothing here allocates. Coefficients are kept as
/// signed representatives of their class mod q and brought to [0, q) only when encoded. Every
/// function runs in time independent of the coefficient values: no branch and no memory index
/// depends on them (the loops' bounds and the twiddle factors are public constants).
///
/// The transform is the one of the Kyber specification (§1.1): 7 layers of Cooley-Tukey
/// butterflies with zeta = 17 (a primitive 256th root of unity mod q) in bit-reversed order,
/// leaving 128 polynomials of degree 1 modulo X^2 - zeta^(2 brv7(i) + 1). Twiddles carry the
/// Montgomery factor R = 2^16 so that each multiplication is one Montgomery reduction.
enum KyberArithmetic {
    typealias Poly = UnsafeMutablePointer<Int16>

    static let q = KyberParameters.q
    /// q^-1 mod 2^16, as a signed 16-bit value (62209 - 2^16).
    static let qInverse: Int16 = -3327
    /// R^2 mod q with R = 2^16: Montgomery-multiplying by it multiplies by R.
    static let montgomerySquared: Int16 = 1353
    /// R^2 / 128 mod q: the inverse transform's final scaling (1/128) and its conversion back
    /// from the Montgomery domain, in one multiplication.
    static let inverseScale: Int16 = 1441

    /// zetas[i] = R * 17^brv7(i) mod q, as signed representatives in (-q/2, q/2).
    static let zetas: [Int16] = {
        func bitReversed7(_ x: Int) -> Int {
            var r = 0
            for bit in 0..<7 where x & (1 << bit) != 0 { r |= 1 << (6 - bit) }
            return r
        }
        let q = Int(KyberParameters.q)
        let montgomeryR = (1 << 16) % q
        return (0..<128).map { i in
            var power = 1
            for _ in 0..<bitReversed7(i) { power = power * 17 % q }
            let value = power * montgomeryR % q
            return Int16(value > q / 2 ? value - q : value)
        }
    }()

    /// a * R^-1 mod q, for |a| < q * 2^15; the result is in (-q, q).
    @inline(__always)
    static func montgomeryReduce(_ a: Int32) -> Int16 {
        let t = Int16(truncatingIfNeeded: a) &* qInverse
        return Int16(truncatingIfNeeded: (a &- Int32(t) &* q) &>> 16)
    }

    /// a * b * R^-1 mod q.
    @inline(__always)
    static func montgomeryMultiply(_ a: Int16, _ b: Int16) -> Int16 {
        montgomeryReduce(Int32(a) &* Int32(b))
    }

    /// The representative of a mod q in [-(q-1)/2, (q-1)/2], for any Int16 a, without division:
    /// the quotient is estimated as round(a * v / 2^26) with v = round(2^26 / q) = 20159, which
    /// is exact over the whole Int16 range.
    @inline(__always)
    static func barrettReduce(_ a: Int16) -> Int16 {
        let v: Int32 = 20159
        let quotient = (v &* Int32(a) &+ (1 << 25)) &>> 26
        return a &- Int16(truncatingIfNeeded: quotient &* q)
    }

    /// The representative in [0, q) of a value in (-q, q): adds q when negative, by mask.
    @inline(__always)
    static func toCanonical(_ a: Int16) -> Int16 {
        a &+ ((a &>> 15) & Int16(truncatingIfNeeded: q))
    }

    /// Barrett-reduces every coefficient.
    static func reduce(_ r: Poly) {
        let raw = UnsafeMutableRawPointer(r)
        for j in stride(from: 0, to: 256, by: 16) {
            KyberVector.store(KyberVector.barrettReduce(KyberVector.load(raw, j)), raw, j)
        }
    }

    /// r += a, coefficient-wise (no reduction; callers keep the sum within Int16).
    static func add(_ r: Poly, _ a: Poly) {
        for i in 0..<256 { r[i] = r[i] &+ a[i] }
    }

    /// r = a - r, coefficient-wise (no reduction).
    static func subtract(from a: Poly, _ r: Poly) {
        for i in 0..<256 { r[i] = a[i] &- r[i] }
    }

    /// The forward transform, in place, followed by a Barrett reduction: input coefficients of
    /// absolute value below q, output in [-(q-1)/2, (q-1)/2], in bit-reversed order.
    /// (Each of the 7 layers grows the bound by at most q: below 8q < 2^15.)
    ///
    /// 16 coefficients at a time (`KyberVector`): the layers of butterfly distance 128 to 16
    /// pair whole vectors; the layers of distance 8, 4 and 2 first split two vectors into their
    /// butterfly halves (lane shuffles) and join them back afterwards.
    static func ntt(_ r: Poly) {
        typealias V = KyberVector
        let raw = UnsafeMutableRawPointer(r)
        zetas.withUnsafeBufferPointer { zetas in
            var k = 1
            var length = 128
            while length >= 16 {
                var start = 0
                while start < 256 {
                    let zeta = V.Lanes(repeating: zetas[k])
                    k += 1
                    for j in stride(from: start, to: start + length, by: 16) {
                        let a = V.load(raw, j), b = V.load(raw, j + length)
                        let t = V.montgomeryMultiply(b, zeta)
                        V.store(a &+ t, raw, j)
                        V.store(a &- t, raw, j + length)
                    }
                    start += 2 * length
                }
                length >>= 1
            }
        }
        // Constant group sizes: each call is unrolled into fixed lane shuffles.
        forwardLayer(raw, group: 8, V.forwardZetas8)
        forwardLayer(raw, group: 4, V.forwardZetas4)
        forwardLayer(raw, group: 2, V.forwardZetas2)
        reduce(r)
    }

    /// The inverse transform, in place, including the factor 1/128 and a multiplication by R
    /// (which cancels the R^-1 that `multiplyAccumulate` leaves): input coefficients of absolute
    /// value below q, output in (-q, q), in normal order. Gentleman-Sande butterflies
    /// (a, b) -> (a + b, zeta (b - a)), the sum Barrett-reduced.
    static func inverseNTT(_ r: Poly) {
        typealias V = KyberVector
        let raw = UnsafeMutableRawPointer(r)
        inverseLayer(raw, group: 2, V.inverseZetas2)
        inverseLayer(raw, group: 4, V.inverseZetas4)
        inverseLayer(raw, group: 8, V.inverseZetas8)
        zetas.withUnsafeBufferPointer { zetas in
            var length = 16
            while length <= 128 {
                var block = 0
                var start = 0
                while start < 256 {
                    let zeta = V.Lanes(repeating: zetas[2 * (128 / length) - 1 - block])
                    block += 1
                    for j in stride(from: start, to: start + length, by: 16) {
                        let a = V.load(raw, j), b = V.load(raw, j + length)
                        V.store(V.barrettReduce(a &+ b), raw, j)
                        V.store(V.montgomeryMultiply(b &- a, zeta), raw, j + length)
                    }
                    start += 2 * length
                }
                length <<= 1
            }
        }
        let scale = V.Lanes(repeating: inverseScale)
        for j in stride(from: 0, to: 256, by: 16) { V.store(V.montgomeryMultiply(V.load(raw, j), scale), raw, j) }
    }

    /// One forward layer of butterfly distance `group` (8, 4 or 2) over the 8 pairs of vectors.
    @inline(__always)
    private static func forwardLayer(_ raw: UnsafeMutableRawPointer, group: Int, _ table: [KyberVector.Lanes]) {
        typealias V = KyberVector
        table.withUnsafeBufferPointer { zetas in
            for pair in 0..<8 {
                let (a, b) = V.split(V.load(raw, 32 * pair), V.load(raw, 32 * pair + 16), group: group)
                let t = V.montgomeryMultiply(b, zetas[pair])
                let (v, w) = V.join(a &+ t, a &- t, group: group)
                V.store(v, raw, 32 * pair)
                V.store(w, raw, 32 * pair + 16)
            }
        }
    }

    /// One inverse layer of butterfly distance `group` (2, 4 or 8) over the 8 pairs of vectors.
    @inline(__always)
    private static func inverseLayer(_ raw: UnsafeMutableRawPointer, group: Int, _ table: [KyberVector.Lanes]) {
        typealias V = KyberVector
        table.withUnsafeBufferPointer { zetas in
            for pair in 0..<8 {
                let (a, b) = V.split(V.load(raw, 32 * pair), V.load(raw, 32 * pair + 16), group: group)
                let (v, w) = V.join(V.barrettReduce(a &+ b), V.montgomeryMultiply(b &- a, zetas[pair]), group: group)
                V.store(v, raw, 32 * pair)
                V.store(w, raw, 32 * pair + 16)
            }
        }
    }

    /// acc += a * b in the NTT domain, times R^-1: for each pair i,
    /// (a0 + a1 X)(b0 + b1 X) mod (X^2 - zeta_i) = (a0 b0 + a1 b1 zeta_i) + (a0 b1 + a1 b0) X,
    /// every product a Montgomery multiplication (so each term is below q in absolute value).
    ///
    /// 8 pairs per vector, each pair one 32-bit lane (a0 low, a1 high): P = a * b lane by lane
    /// gives a0 b0 | a1 b1; Z = P * (0 | zeta) gives 0 | a1 b1 zeta, moved down by a 16-bit shift
    /// of the 32-bit lanes; Q = a * (b with its halves swapped) gives a0 b1 | a1 b0, whose sum
    /// lands in the high half after a 16-bit shift up. The low halves of P + (Z >> 16) and the
    /// high halves of Q + (Q << 16) are the result.
    ///
    /// Bounds: `a` has coefficients in [0, 4096) (decoded keys, matrix entries) and `b` at most
    /// (q-1)/2 in absolute value (a forward transform's output), so every product is within a
    /// Montgomery reduction's input range; each call adds less than 2q to a coefficient, so the
    /// k = 4 terms of a row sum to less than 8q < 2^15.
    static func multiplyAccumulate(_ acc: Poly, _ a: Poly, _ b: Poly) {
        typealias V = KyberVector
        typealias Words = SIMD8<UInt32>
        let accRaw = UnsafeMutableRawPointer(acc), aRaw = UnsafeMutableRawPointer(a), bRaw = UnsafeMutableRawPointer(b)
        let lowHalves = Words(repeating: 0x0000_FFFF)
        V.pairZetas.withUnsafeBufferPointer { zetas in
            for vector in 0..<16 {
                let offset = 16 * vector
                let av = V.load(aRaw, offset), bv = V.load(bRaw, offset)
                let bWords = unsafeBitCast(bv, to: Words.self)
                let bSwapped = unsafeBitCast((bWords &<< 16) | (bWords &>> 16), to: V.Lanes.self)
                let p = V.montgomeryMultiply(av, bv)
                let z = unsafeBitCast(V.montgomeryMultiply(p, zetas[vector]), to: Words.self)
                let even = unsafeBitCast(p &+ unsafeBitCast(z &>> 16, to: V.Lanes.self), to: Words.self)
                let q = V.montgomeryMultiply(av, bSwapped)
                let odd = unsafeBitCast(q &+ unsafeBitCast(unsafeBitCast(q, to: Words.self) &<< 16, to: V.Lanes.self), to: Words.self)
                let product = unsafeBitCast((even & lowHalves) | (odd & ~lowHalves), to: V.Lanes.self)
                V.store(V.load(accRaw, offset) &+ product, accRaw, offset)
            }
        }
    }

    /// r = the accumulated sum, Barrett-reduced; clears the accumulator for the next row.
    static func finishAccumulation(_ acc: Poly, into r: Poly) {
        let accRaw = UnsafeMutableRawPointer(acc), rRaw = UnsafeMutableRawPointer(r)
        for j in stride(from: 0, to: 256, by: 16) {
            KyberVector.store(KyberVector.barrettReduce(KyberVector.load(accRaw, j)), rRaw, j)
            KyberVector.store(KyberVector.Lanes(), accRaw, j)
        }
    }
}
