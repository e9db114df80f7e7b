/// 16 coefficients at a time, for the transforms: `SIMD16<Int16>` arithmetic that LLVM maps to
/// the CPU's vector instructions (two SSE2 registers on baseline x86-64, NEON on AArch64).
///
/// The high half of a 16x16-bit product is written as a loop over the lanes; LLVM recognises
/// it as one vector instruction (`pmulhw` / `sqdmulh`-class), which the generic `SIMD`
/// conversions between lane widths do not give. Results are bit for bit those of the scalar
/// `KyberArithmetic.montgomeryReduce` and `barrettReduce`.
enum KyberVector {
    typealias Lanes = SIMD16<Int16>

    @inline(__always)
    static func load(_ base: UnsafeMutableRawPointer, _ index: Int) -> Lanes {
        base.loadUnaligned(fromByteOffset: 2 * index, as: Lanes.self)
    }

    @inline(__always)
    static func store(_ value: Lanes, _ base: UnsafeMutableRawPointer, _ index: Int) {
        base.storeBytes(of: value, toByteOffset: 2 * index, as: Lanes.self)
    }

    /// floor(a * b / 2^16) per lane.
    @inline(__always)
    static func multiplyHigh(_ a: Lanes, _ b: Lanes) -> Lanes {
        var high = Lanes()
        for i in 0..<16 { high[i] = Int16(truncatingIfNeeded: (Int32(a[i]) &* Int32(b[i])) &>> 16) }
        return high
    }

    /// a * b * R^-1 mod q per lane, in (-q, q): with t = (a b mod 2^16) q^-1 mod 2^16,
    /// (a b - t q) / 2^16 = high(a b) - high(t q) exactly, as the low halves are equal.
    @inline(__always)
    static func montgomeryMultiply(_ a: Lanes, _ b: Lanes) -> Lanes {
        let t = a &* b &* Lanes(repeating: KyberArithmetic.qInverse)
        return multiplyHigh(a, b) &- multiplyHigh(t, Lanes(repeating: Int16(KyberArithmetic.q)))
    }

    /// Barrett reduction per lane: the quotient floor((20159 a + 2^25) / 2^26) is computed as
    /// (high(a * 20159) + 2^9) >> 10, the same value.
    @inline(__always)
    static func barrettReduce(_ a: Lanes) -> Lanes {
        let quotient = (multiplyHigh(a, Lanes(repeating: 20159)) &+ Lanes(repeating: 512)) &>> Lanes(repeating: 10)
        return a &- quotient &* Lanes(repeating: Int16(KyberArithmetic.q))
    }

    /// The butterfly halves of 32 consecutive coefficients v || w for butterfly distance
    /// `group` (8, 4 or 2): `a` takes the first `group` of every 2 * `group`, `b` the second.
    @inline(__always)
    static func split(_ v: Lanes, _ w: Lanes, group g: Int) -> (Lanes, Lanes) {
        var a = Lanes(), b = Lanes()
        for c in 0..<(8 / g) {
            for t in 0..<g {
                a[c * g + t] = v[2 * c * g + t]
                b[c * g + t] = v[2 * c * g + g + t]
                a[8 + c * g + t] = w[2 * c * g + t]
                b[8 + c * g + t] = w[2 * c * g + g + t]
            }
        }
        return (a, b)
    }

    /// The inverse of `split`.
    @inline(__always)
    static func join(_ a: Lanes, _ b: Lanes, group g: Int) -> (Lanes, Lanes) {
        var v = Lanes(), w = Lanes()
        for c in 0..<(8 / g) {
            for t in 0..<g {
                v[2 * c * g + t] = a[c * g + t]
                v[2 * c * g + g + t] = b[c * g + t]
                w[2 * c * g + t] = a[8 + c * g + t]
                w[2 * c * g + g + t] = b[8 + c * g + t]
            }
        }
        return (v, w)
    }

    /// Twiddles of the layers of distance `group` (8, 4, 2) laid out as `split` lays out `a`:
    /// lane L of vector pair p belongs to butterfly block 16p/group + L/group.
    /// Forward layer of distance g uses zetas[128/g + block]; the inverse uses
    /// zetas[256/g - 1 - block].
    private static func twiddles(group g: Int, forward: Bool) -> [Lanes] {
        (0..<8).map { pair in
            var lanes = Lanes()
            for lane in 0..<16 {
                let block = 16 * pair / g + lane / g
                lanes[lane] = KyberArithmetic.zetas[forward ? 128 / g + block : 256 / g - 1 - block]
            }
            return lanes
        }
    }

    /// The zeta of each degree-1 factor for `multiplyAccumulate`, in the odd lane of its pair
    /// (even lanes 0): lanes 2m, 2m+1 of vector v hold pair 8v + m, which multiplies modulo
    /// X^2 - zeta with zeta = zetas[64 + pair/2] for an even pair and its negation for an odd one.
    static let pairZetas: [Lanes] = (0..<16).map { vector in
        var lanes = Lanes()
        for m in 0..<8 {
            let pair = 8 * vector + m
            let zeta = KyberArithmetic.zetas[64 + pair / 2]
            lanes[2 * m + 1] = pair % 2 == 0 ? zeta : 0 &- zeta
        }
        return lanes
    }

    static let forwardZetas8 = twiddles(group: 8, forward: true)
    static let forwardZetas4 = twiddles(group: 4, forward: true)
    static let forwardZetas2 = twiddles(group: 2, forward: true)
    static let inverseZetas2 = twiddles(group: 2, forward: false)
    static let inverseZetas4 = twiddles(group: 4, forward: false)
    static let inverseZetas8 = twiddles(group: 8, forward: false)
}
