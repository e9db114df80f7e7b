/// HKDF with SHA-256 (RFC 5869), the expand counter starting at 1 (libsignal's "HKDFv3").
public enum HKDF {
    /// A salt of 32 zero bytes: what libsignal uses when none is given. Its HMAC pads are
    /// computed once.
    private static let zeroSaltKey = HMACSHA256(key: [UInt8](repeating: 0, count: 32))

    /// HKDF-Extract: PRK = HMAC(salt, IKM). An empty salt means 32 zero bytes (RFC 5869 §2.2).
    public static func extract(salt: UnsafeRawBufferPointer, ikm: UnsafeRawBufferPointer, into prk: UnsafeMutableRawBufferPointer) {
        let key = salt.count == 0 ? zeroSaltKey : HMACSHA256(key: salt)
        key.authenticate(ikm, into: prk)
    }

    /// Extract with the zero salt, the common case in the ratchet's message-key derivation.
    public static func extractWithZeroSalt(ikm: UnsafeRawBufferPointer, into prk: UnsafeMutableRawBufferPointer) {
        zeroSaltKey.authenticate(ikm, into: prk)
    }

    /// HKDF-Expand: OKM = T(1) || T(2) || ..., T(i) = HMAC(PRK, T(i-1) || info || i).
    public static func expand(prk: UnsafeRawBufferPointer, info: UnsafeRawBufferPointer, into okm: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        let length = okm.count
        guard length <= 255 * 32 else { throw .outputTooLong(length) }
        let key = HMACSHA256(key: prk)
        var block = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var written = 0
        var counter: UInt8 = 1
        withUnsafeMutableBytes(of: &block) { t in
            while written < length {
                var stream = key.start()
                if counter > 1 { stream.update(UnsafeRawBufferPointer(t)) }
                stream.update(info)
                withUnsafeBytes(of: counter) { stream.update($0) }
                stream.finish(into: t)
                let n = min(32, length - written)
                if let dst = okm.baseAddress, let src = t.baseAddress {
                    (dst + written).copyMemory(from: src, byteCount: n)
                }
                written += n
                counter &+= 1
            }
            t.initializeMemory(as: UInt8.self, repeating: 0)
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
