import COpenSSL
import CSodium

/// Signatures over Curve25519 keys, as libsignal computes them (`curve_sigs`, which libsignal
/// calls XEdDSA): the clamped X25519 scalar is used directly as the Ed25519 secret scalar, and
/// the Edwards public key's sign bit travels in bit 7 of the signature's last byte.
///
///   r = SHA512(0xFE || 0xFF*31 || k || M || Z) mod L,  R = rB,  A = kB
///   h = SHA512(R || A || M) mod L,  s = h·k + r mod L,  sig = R || s  (sig[63] |= sign(A))
///
/// Verification converts the Montgomery u-coordinate to the Edwards y = (u-1)/(u+1) mod p with
/// the sign bit from the signature, then runs a standard Ed25519 verification (libsodium),
/// which rejects a non-canonical s, small-order R or A and non-canonical encodings.
public enum XEdDSA {
    public static let signatureSize = 64
    public static let randomSize = 64

    /// Signs `message` with `privateKey`, using `random` (64 bytes) as the nonce input Z.
    public static func sign<M: ByteView>(
        _ message: M, with privateKey: PrivateKey, random: [UInt8]
    ) throws(CryptoError) -> [UInt8] {
        try Sodium.ensureReady()
        guard random.count == randomSize else { throw .invalidKeyLength(expected: randomSize, actual: random.count) }
        let k = privateKey.rawBytes()
        var a = [UInt8](repeating: 0, count: 32)       // k mod L
        var edPublic = [UInt8](repeating: 0, count: 32) // A = kB
        var r = [UInt8](repeating: 0, count: 32)
        var bigR = [UInt8](repeating: 0, count: 32)
        var h = [UInt8](repeating: 0, count: 32)
        var s = [UInt8](repeating: 0, count: 32)
        defer {
            for i in 0..<32 { a[i] = 0; r[i] = 0 }
        }
        var ok = true
        k.withBytes { kb in
            guard let kp = kb.baseAddress?.assumingMemoryBound(to: UInt8.self) else { ok = false; return }
            // A = kB (k < 2^255, the clamped scalar itself, no negation).
            if crypto_scalarmult_ed25519_base_noclamp(&edPublic, kp) != 0 { ok = false; return }
            var wide = [UInt8](repeating: 0, count: 64)
            wide.replaceSubrange(0..<32, with: kb)
            crypto_core_ed25519_scalar_reduce(&a, wide)
            for i in 0..<64 { wide[i] = 0 }

            var hasher = SHA512Hasher()
            var prefix = [UInt8](repeating: 0xFF, count: 32)
            prefix[0] = 0xFE
            hasher.update(prefix)
            hasher.update(kb)
            message.withBytes { hasher.update($0) }
            hasher.update(random)
            var nonce = hasher.finish()
            crypto_core_ed25519_scalar_reduce(&r, nonce)
            for i in 0..<64 { nonce[i] = 0 }
        }
        guard ok else { throw .invalidSignature }
        guard crypto_scalarmult_ed25519_base_noclamp(&bigR, r) == 0 else { throw .invalidSignature }

        var hasher = SHA512Hasher()
        hasher.update(bigR)
        hasher.update(edPublic)
        message.withBytes { hasher.update($0) }
        let hWide = hasher.finish()
        crypto_core_ed25519_scalar_reduce(&h, hWide)

        var ha = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_mul(&ha, h, a)
        crypto_core_ed25519_scalar_add(&s, ha, r)
        for i in 0..<32 { ha[i] = 0 }

        var signature = bigR + s
        signature[63] &= 0x7F
        signature[63] |= edPublic[31] & 0x80
        return signature
    }

    /// Signs with a fresh 64-byte nonce input drawn from `random`.
    public static func sign<M: ByteView>(
        _ message: M, with privateKey: PrivateKey, using random: any RandomSource
    ) throws(CryptoError) -> [UInt8] {
        try sign(message, with: privateKey, random: random.draw(randomSize, purpose: .signatureNonce))
    }

    /// True when `signature` is a valid signature of `message` under `publicKey`.
    public static func verify<M: ByteView>(_ signature: [UInt8], of message: M, by publicKey: PublicKey) -> Bool {
        VerifyingKey(publicKey).verify(signature, of: message)
    }

    /// A public key prepared for verification: the Edwards y-coordinate is computed once, for a
    /// key that verifies many signatures (a sender key's signing key).
    public struct VerifyingKey: Sendable {
        let edwardsY: [UInt8]?

        public init(_ publicKey: PublicKey) {
            edwardsY = XEdDSA.edwardsY(fromMontgomeryU: Array(publicKey.u))
        }

        public func verify<M: ByteView>(_ signature: [UInt8], of message: M) -> Bool {
            guard let edwardsY else { return false }
            return XEdDSA.verify(signature, of: message, edwardsY: edwardsY)
        }
    }

    static func verify<M: ByteView>(_ signature: [UInt8], of message: M, edwardsY: [UInt8]) -> Bool {
        guard Sodium.ready, signature.count == signatureSize else { return false }
        // The scalar s must be below 2^253 (after removing the sign bit); libsodium then
        // checks s < L.
        if signature[63] & 0x60 != 0 { return false }
        var edPublic = edwardsY
        edPublic[31] |= signature[63] & 0x80
        var sig = signature
        sig[63] &= 0x7F
        return message.withBytes { m in
            let base = m.baseAddress?.assumingMemoryBound(to: UInt8.self)
            var empty: UInt8 = 0
            return withUnsafePointer(to: &empty) { emptyPtr in
                crypto_sign_ed25519_verify_detached(sig, base ?? emptyPtr, UInt64(m.count), edPublic) == 0
            }
        }
    }

    /// y = (u - 1) / (u + 1) mod p, little-endian, top bit clear. Nil when u = -1 (no point).
    /// Public data only: OpenSSL's BIGNUM is fine here (libsodium 1.0.18 exposes no field
    /// arithmetic).
    static func edwardsY(fromMontgomeryU uIn: [UInt8]) -> [UInt8]? {
        guard uIn.count == 32 else { return nil }
        var u = uIn
        u[31] &= 0x7F
        guard let ctx = BN_CTX_new() else { return nil }
        defer { BN_CTX_free(ctx) }
        guard let p = BN_new(), let bu = BN_new(), let num = BN_new(), let den = BN_new(), let y = BN_new() else { return nil }
        defer { BN_free(p); BN_free(bu); BN_free(num); BN_free(den); BN_free(y) }
        // p = 2^255 - 19
        guard BN_set_word(p, 1) == 1, BN_lshift(p, p, 255) == 1, BN_sub_word(p, 19) == 1 else { return nil }
        let bigEndian = Array(u.reversed())
        guard BN_bin2bn(bigEndian, 32, bu) != nil,
              BN_nnmod(bu, bu, p, ctx) == 1,
              BN_copy(num, bu) != nil, BN_copy(den, bu) != nil,
              BN_sub_word(num, 1) == 1, BN_add_word(den, 1) == 1,
              BN_nnmod(num, num, p, ctx) == 1, BN_nnmod(den, den, p, ctx) == 1,
              BN_is_zero(den) == 0,
              BN_mod_inverse(den, den, p, ctx) != nil,
              BN_mod_mul(y, num, den, p, ctx) == 1
        else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        guard BN_bn2binpad(y, &out, 32) == 32 else { return nil }
        out.reverse()
        return out
    }
}
