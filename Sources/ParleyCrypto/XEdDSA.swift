import CEd25519
import COpenSSL
import CSodium
import Foundation

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
        try SigningKey(privateKey).sign(message, random: random)
    }

    /// Signs with a fresh 64-byte nonce input drawn from `random`.
    public static func sign<M: ByteView>(
        _ message: M, with privateKey: PrivateKey, using random: any RandomSource
    ) throws(CryptoError) -> [UInt8] {
        var z = random.draw(randomSize, purpose: .signatureNonce)
        defer { z.withUnsafeMutableBytes { SecretBytes.wipe($0) } }
        return try sign(message, with: privateKey, random: z)
    }

    /// A private key prepared for signing many messages (a sender key's signing key): the
    /// Edwards public key `A = k·B` (one fixed-base multiplication) and `a = k mod L` are
    /// computed once, so a signature costs one fixed-base multiplication (`R = r·B`, libsodium,
    /// constant time) and two SHA-512 hashes.
    public struct SigningKey: Sendable {
        /// The clamped scalar `k`, then `a = k mod L`, 32 bytes each.
        private let k: SecretBytes
        private let a: SecretBytes
        /// `A = k·B`, its sign bit included.
        private let edwardsPublic: [UInt8]

        public init(_ privateKey: PrivateKey) throws(CryptoError) {
            try Sodium.ensureReady()
            let k = privateKey.rawBytes()
            var edPublic = [UInt8](repeating: 0, count: 32)
            var failed = false
            let a = SecretBytes(count: 32) { aBuf in
                k.withBytes { kb in
                    guard let kp = kb.baseAddress?.assumingMemoryBound(to: UInt8.self),
                          let ap = aBuf.baseAddress?.assumingMemoryBound(to: UInt8.self)
                    else { failed = true; return }
                    // A = kB (k < 2^255, the clamped scalar itself, no negation).
                    if crypto_scalarmult_ed25519_base_noclamp(&edPublic, kp) != 0 { failed = true; return }
                    withUnsafeTemporaryAllocation(byteCount: 64, alignment: 16) { wide in
                        guard let w = wide.baseAddress else { failed = true; return }
                        wide.initializeMemory(as: UInt8.self, repeating: 0)
                        w.copyMemory(from: kp, byteCount: 32)
                        crypto_core_ed25519_scalar_reduce(ap, w.assumingMemoryBound(to: UInt8.self))
                        sodium_memzero(w, 64)
                    }
                }
            }
            guard !failed else { throw .invalidSignature }
            self.k = k
            self.a = a
            self.edwardsPublic = edPublic
        }

        /// Signs `message` with `random` (64 bytes) as the nonce input Z.
        public func sign<M: ByteView>(_ message: M, random: [UInt8]) throws(CryptoError) -> [UInt8] {
            guard random.count == randomSize else { throw .invalidKeyLength(expected: randomSize, actual: random.count) }
            var signature = [UInt8](repeating: 0, count: signatureSize)
            let ok: Bool = message.withBytes { m in
                random.withUnsafeBytes { z in
                    signature.withUnsafeMutableBytes { sig in sign(m, z, into: sig) }
                }
            }
            guard ok else { throw .invalidSignature }
            return signature
        }

        /// Signs `message` (lent in place) with `random` (64 bytes) as Z, writing the 64-byte
        /// signature to `signature`.
        public func sign(
            _ message: UnsafeRawBufferPointer, random: [UInt8], into signature: UnsafeMutableRawBufferPointer
        ) throws(CryptoError) {
            guard random.count == randomSize else { throw .invalidKeyLength(expected: randomSize, actual: random.count) }
            guard signature.count == signatureSize else { throw .invalidKeyLength(expected: signatureSize, actual: signature.count) }
            let ok = random.withUnsafeBytes { z in sign(message, z, into: signature) }
            guard ok else { throw .invalidSignature }
        }

        /// r = SHA-512(FE || FF*31 || k || M || Z) mod L; R = rB; h = SHA-512(R || A || M) mod L;
        /// s = h·a + r mod L. Every secret intermediate lives in one scratch block, wiped after.
        private func sign(_ m: UnsafeRawBufferPointer, _ z: UnsafeRawBufferPointer, into sig: UnsafeMutableRawBufferPointer) -> Bool {
            guard let out = sig.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
            // scratch: wide(64) | r(32) | h(32) | ha(32)
            return withUnsafeTemporaryAllocation(byteCount: 160, alignment: 16) { scratch -> Bool in
                guard let base = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
                scratch.initializeMemory(as: UInt8.self, repeating: 0)
                defer { sodium_memzero(base, 160) }
                let wide = base, r = base + 64, h = base + 96, ha = base + 128
                var hasher = SHA512Hasher()
                XEdDSA.noncePrefix.withUnsafeBytes { hasher.update($0) }
                k.withBytes { hasher.update($0) }
                hasher.update(m)
                hasher.update(z)
                hasher.finish(into: wide)
                crypto_core_ed25519_scalar_reduce(r, wide)
                guard crypto_scalarmult_ed25519_base_noclamp(out, r) == 0 else { return false }  // R
                var challenge = SHA512Hasher()
                challenge.update(UnsafeRawBufferPointer(start: out, count: 32))
                edwardsPublic.withUnsafeBytes { challenge.update($0) }
                challenge.update(m)
                challenge.finish(into: wide)
                crypto_core_ed25519_scalar_reduce(h, wide)
                a.withBytes { ab in
                    if let ap = ab.baseAddress?.assumingMemoryBound(to: UInt8.self) { crypto_core_ed25519_scalar_mul(ha, h, ap) }
                }
                crypto_core_ed25519_scalar_add(out + 32, ha, r)  // s
                out[63] = (out[63] & 0x7F) | (edwardsPublic[31] & 0x80)
                return true
            }
        }
    }

    /// FE || FF*31, the nonce hash's prefix.
    private static let noncePrefix: [UInt8] = [0xFE] + [UInt8](repeating: 0xFF, count: 31)

    /// True when `signature` is a valid signature of `message` under `publicKey` (one-shot:
    /// libsodium's verification, nothing cached beyond the key's Edwards y).
    public static func verify<M: ByteView>(_ signature: [UInt8], of message: M, by publicKey: PublicKey) -> Bool {
        guard let y = PreparedKey.cached(publicKey).edwardsY else { return false }
        return verify(signature, of: message, edwardsY: y)
    }

    /// A public key prepared for verifying many signatures (a sender key's signing key). Its
    /// Edwards y and, from the second verification on, tables of multiples of the point are
    /// computed once per public key and shared (`PreparedKey`), so a verification costs about a
    /// third of libsodium's; the result is the same as libsodium's for every input.
    public struct VerifyingKey: Sendable {
        let prepared: PreparedKey

        public init(_ publicKey: PublicKey) {
            prepared = PreparedKey.cached(publicKey)
        }

        public func verify<M: ByteView>(_ signature: [UInt8], of message: M) -> Bool {
            signature.withUnsafeBytes { sig in message.withBytes { m in verify(signature: sig, message: m) } }
        }

        /// `signature` (64 bytes) over `message`, both lent in place.
        public func verify(signature: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) -> Bool {
            guard let edwardsY = prepared.edwardsY else { return false }
            guard Sodium.ready, signature.count == signatureSize, signature[63] & 0x60 == 0 else { return false }
            guard let table = prepared.table() else {
                return XEdDSA.verify(Array(signature), of: message, edwardsY: edwardsY)
            }
            guard let sigBase = signature.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
            let sign = signature[63] & 0x80
            // scratch: A(32) | wide(64) | h(32) | s(32)
            return withUnsafeTemporaryAllocation(byteCount: 160, alignment: 16) { scratch -> Bool in
                guard let base = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
                let a = base, wide = base + 32, h = base + 96, s = base + 128
                for i in 0..<32 { a[i] = edwardsY[i] }
                a[31] |= sign
                var hasher = SHA512Hasher()
                hasher.update(UnsafeRawBufferPointer(start: sigBase, count: 32))
                hasher.update(UnsafeRawBufferPointer(start: a, count: 32))
                hasher.update(message)
                hasher.finish(into: wide)
                crypto_core_ed25519_scalar_reduce(h, wide)
                for i in 0..<32 { s[i] = sigBase[32 + i] }
                s[31] &= 0x7F
                return parley_ed25519_verify(table, sign != 0 ? 1 : 0, sigBase, s, h) == 1
            }
        }
    }

    /// One public key's verification data, shared by every `VerifyingKey` of that key through a
    /// bounded process-wide cache: the Edwards y (a modular inversion) at once, the tables
    /// (about 25 KB, as much work as two libsodium verifications) at its second verification,
    /// so a key that verifies once costs no more than before.
    final class PreparedKey: @unchecked Sendable {
        let edwardsY: [UInt8]?
        private let lock = NSLock()
        private var verifications = 0
        private var tables: OpaquePointer?

        init(_ publicKey: PublicKey) {
            edwardsY = XEdDSA.edwardsY(fromMontgomeryU: Array(publicKey.u))
        }

        deinit { parley_ed25519_key_free(tables) }

        /// The tables, or nil for the first verification (and when they cannot be made: the
        /// caller then verifies with libsodium, which gives the same answer).
        func table() -> OpaquePointer? {
            lock.lock()
            defer { lock.unlock() }
            if let tables { return tables }
            verifications += 1
            guard verifications >= 2, let edwardsY else { return nil }
            tables = edwardsY.withUnsafeBufferPointer { y in y.baseAddress.flatMap { parley_ed25519_key_new($0) } }
            return tables
        }

        /// Keys kept prepared, newest last. Each costs up to ~25 KB, so 256 keys are at most
        /// ~6.5 MB: the sender keys of several large groups' active members.
        static let cacheCapacity = 256
        private static let cacheLock = NSLock()
        nonisolated(unsafe) private static var cache: [PublicKey: PreparedKey] = [:]
        nonisolated(unsafe) private static var order: [PublicKey] = []

        static func cached(_ publicKey: PublicKey) -> PreparedKey {
            cacheLock.lock()
            defer { cacheLock.unlock() }
            if let hit = cache[publicKey] { return hit }
            let prepared = PreparedKey(publicKey)
            cache[publicKey] = prepared
            order.append(publicKey)
            if order.count > cacheCapacity {
                let evicted = order.removeFirst()
                cache[evicted] = nil
            }
            return prepared
        }
    }

    /// libsodium's verification (`crypto_sign_ed25519_verify_detached`) with the sign bit moved
    /// from the signature into A: the reference the prepared path is tested against.
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
