import CSodium

/// HKDF with SHA-256 (RFC 5869), the expand counter starting at 1 (libsignal's "HKDFv3").
public enum HKDF {
    /// A salt of 32 zero bytes: what libsignal uses when none is given. Its HMAC pads are
    /// computed once.
    private static let zeroSaltKey = HMACSHA256(key: [UInt8](repeating: 0, count: 32))

    /// HKDF-Extract: PRK = HMAC(salt, IKM). An empty salt means 32 zero bytes (RFC 5869 §2.2).
    public static func extract(salt: UnsafeRawBufferPointer, ikm: UnsafeRawBufferPointer, into prk: UnsafeMutableRawBufferPointer) {
        if salt.count == 0 {
            zeroSaltKey.authenticate(ikm, into: prk)
        } else {
            var key = HMACSHA256(key: salt)
            defer { key.wipe() }
            key.authenticate(ikm, into: prk)
        }
    }

    /// Extract with the zero salt, the common case in the ratchet's message-key derivation.
    public static func extractWithZeroSalt(ikm: UnsafeRawBufferPointer, into prk: UnsafeMutableRawBufferPointer) {
        zeroSaltKey.authenticate(ikm, into: prk)
    }

    /// HKDF-Expand: OKM = T(1) || T(2) || ..., T(i) = HMAC(PRK, T(i-1) || info || i).
    ///
    /// Each T(i) input is assembled in one scratch buffer (`T(i-1) || info || i`) so that it is
    /// one hash update rather than three; the scratch is wiped afterwards.
    public static func expand(prk: UnsafeRawBufferPointer, info: UnsafeRawBufferPointer, into okm: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        let length = okm.count
        guard length <= 255 * 32 else { throw .outputTooLong(length) }
        var key = HMACSHA256(key: prk)
        defer { key.wipe() }
        let infoCount = info.count
        withUnsafeTemporaryAllocation(byteCount: 32 + infoCount + 1, alignment: 16) { scratch in
            guard let base = scratch.baseAddress else { return }
            if let i = info.baseAddress, infoCount > 0 { (base + 32).copyMemory(from: i, byteCount: infoCount) }
            let previous = UnsafeMutableRawBufferPointer(start: base, count: 32)
            var written = 0
            var counter: UInt8 = 1
            while written < length {
                scratch[32 + infoCount] = counter
                // T(1) has no predecessor: its input starts after the 32-byte slot.
                let input = counter == 1
                    ? UnsafeRawBufferPointer(rebasing: scratch[32...]) : UnsafeRawBufferPointer(scratch)
                var block = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
                withUnsafeMutableBytes(of: &block) { t in
                    key.authenticate(input, into: t)
                    previous.copyMemory(from: UnsafeRawBufferPointer(t))
                    t.initializeMemory(as: UInt8.self, repeating: 0)
                }
                let n = min(32, length - written)
                if let dst = okm.baseAddress { (dst + written).copyMemory(from: base, byteCount: n) }
                written += n
                counter &+= 1
            }
            sodium_memzero(base, scratch.count)
        }
    }

    /// Extract-then-expand into a new secret of `length` bytes.
    public static func deriveSecret<I: ByteView, S: ByteView, F: ByteView>(
        ikm: I, salt: S, info: F, length: Int
    ) throws(CryptoError) -> SecretBytes {
        guard length <= 255 * 32 else { throw .outputTooLong(length) }
        var prk = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        defer { prk = (0, 0, 0, 0) }
        return try withUnsafeMutableBytes(of: &prk) { (prkBuf) throws(CryptoError) -> SecretBytes in
            ikm.withBytes { i in salt.withBytes { s in extract(salt: s, ikm: i, into: prkBuf) } }
            return try SecretBytes(count: length) { (out) throws(CryptoError) in
                try info.withBytes { (f) throws(CryptoError) in try expand(prk: UnsafeRawBufferPointer(prkBuf), info: f, into: out) }
            }
        }
    }

    /// Extract-then-expand as a plain array (tests and known-answer checks).
    public static func derive<I: ByteView, S: ByteView, F: ByteView>(
        ikm: I, salt: S, info: F, length: Int
    ) throws(CryptoError) -> [UInt8] {
        try deriveSecret(ikm: ikm, salt: salt, info: info, length: length).copyBytes()
    }
}
