import CSodium

/// Which Curve25519 public keys are canonical, as current libsignal defines it for the base key
/// of an incoming PreKeySignalMessage (`PublicKey::is_canonical`, 2025-09): the 32-byte `u`
/// is a canonical field encoding (bit 255 clear and `u < p = 2^255 - 19`) and the point is
/// torsion-free (it lies in the prime-order subgroup).
///
/// X25519 ignores bit 255 of `u`, reduces `u` modulo `p`, and clamps every scalar to a multiple
/// of 8, so `u`, `u` with bit 255 set, `u + p` and `u` of `P + T` for any torsion point `T` all
/// give the same shared secrets. A key an honest party generated (`k·B` with the prime-order
/// base point) is always canonical; a non-canonical one can only be a re-encoding of some
/// honest key, which is how a captured PreKeySignalMessage would be replayed under a "new"
/// base key.
extension PublicKey {
    /// `p = 2^255 - 19`, little-endian.
    private static let fieldPrime: [UInt8] = [0xED] + [UInt8](repeating: 0xFF, count: 30) + [0x7F]

    /// True when `u` is the canonical encoding of its field element: bit 255 clear and `u < p`.
    /// Cheap (byte comparisons); public data, so not constant time.
    public var isCanonicalEncoding: Bool {
        let u = serialized  // 0x05 || u
        if u[32] & 0x80 != 0 { return false }
        // u >= p only when u[31] == 0x7F, u[1...30] are all 0xFF and u[0] >= 0xED.
        if u[32] == 0x7F && u[1] >= 0xED && u[2...31].allSatisfy({ $0 == 0xFF }) { return false }
        return true
    }

    /// The canonical encoding of the same X25519 input: bit 255 cleared, then reduced modulo
    /// `p`. Two keys X25519 cannot tell apart by their `u` alone have the same canonical
    /// encoding (the torsion component is a different matter: see `isTorsionFree`).
    public var canonicalEncoding: PublicKey {
        var u = Array(serialized[1...])
        u[31] &= 0x7F
        if u[31] == 0x7F && u[0] >= 0xED && u[1...30].allSatisfy({ $0 == 0xFF }) {
            // p <= u < 2^255: u - p = u[0] - 0xED, every other byte 0.
            let low = u[0] &- 0xED
            u = [low] + [UInt8](repeating: 0, count: 31)
        }
        // A 32-byte u always makes a valid key.
        return (try? PublicKey(u: u)) ?? self
    }

    /// True when the point with this `u` (bit 255 ignored, reduced modulo `p`) is on
    /// Curve25519 itself (not its twist) and in the prime-order subgroup, so it has no small-order
    /// component. Checked on the birationally equivalent Edwards point with sign bit 0 (libsodium's
    /// `crypto_core_ed25519_is_valid_point`: on the curve, not of small order, `L·P = 0`).
    /// Costs about one scalar multiplication.
    public var isTorsionFree: Bool {
        guard Sodium.ready, let y = XEdDSA.edwardsY(fromMontgomeryU: Array(u)) else { return false }
        return y.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress else { return false }
            return crypto_core_ed25519_is_valid_point(base) == 1
        }
    }

    /// libsignal's `is_canonical`: a canonical encoding of a torsion-free point.
    public var isCanonical: Bool { isCanonicalEncoding && isTorsionFree }
}
