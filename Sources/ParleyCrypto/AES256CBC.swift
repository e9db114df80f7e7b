import COpenSSL

/// AES-256 in CBC mode (NIST SP 800-38A), through OpenSSL's EVP interface (AES-NI where the CPU
/// has it). `padding: true` is PKCS#7, what the Signal protocol uses; without padding the input
/// must be a whole number of 16-byte blocks (the NIST known-answer tests).
public enum AES256CBC {
    public static let keySize = 32

    /// The cipher implementation, fetched from OpenSSL's provider once: passing the legacy
    /// `EVP_aes_256_cbc()` to every init makes OpenSSL 3 look it up again each time (locks and
    /// string compares that cost more than encrypting a 200-byte message). Immutable and
    /// thread-safe once fetched.
    nonisolated(unsafe) private static let cipher: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-CBC", nil)
    public static let blockSize = 16

    public static func encrypt(
        _ plaintext: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool = true
    ) throws(CryptoError) -> [UInt8] {
        try run(encrypt: true, input: plaintext, key: key, iv: iv, padding: padding)
    }

    public static func decrypt(
        _ ciphertext: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool = true
    ) throws(CryptoError) -> [UInt8] {
        guard ciphertext.count % blockSize == 0, !(padding && ciphertext.isEmpty) else { throw .invalidPadding }
        return try run(encrypt: false, input: ciphertext, key: key, iv: iv, padding: padding)
    }

    @inlinable
    public static func encrypt<P: ByteView, K: ByteView, I: ByteView>(
        _ plaintext: P, key: K, iv: I, padding: Bool = true
    ) throws(CryptoError) -> [UInt8] {
        try plaintext.withBytes { (p) throws(CryptoError) in
            try key.withBytes { (k) throws(CryptoError) in
                try iv.withBytes { (i) throws(CryptoError) in try encrypt(p, key: k, iv: i, padding: padding) }
            }
        }
    }

    @inlinable
    public static func decrypt<C: ByteView, K: ByteView, I: ByteView>(
        _ ciphertext: C, key: K, iv: I, padding: Bool = true
    ) throws(CryptoError) -> [UInt8] {
        try ciphertext.withBytes { (c) throws(CryptoError) in
            try key.withBytes { (k) throws(CryptoError) in
                try iv.withBytes { (i) throws(CryptoError) in try decrypt(c, key: k, iv: i, padding: padding) }
            }
        }
    }

    private static func run(
        encrypt: Bool, input: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool
    ) throws(CryptoError) -> [UInt8] {
        guard key.count == keySize else { throw .invalidKeyLength(expected: keySize, actual: key.count) }
        guard iv.count == blockSize else { throw .invalidIVLength(iv.count) }
        if !padding && input.count % blockSize != 0 { throw .invalidPadding }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .cipherFailure }
        defer { EVP_CIPHER_CTX_free(ctx) }
        guard let k = key.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let v = iv.baseAddress?.assumingMemoryBound(to: UInt8.self),
              EVP_CipherInit_ex2(ctx, cipher, k, v, encrypt ? 1 : 0, nil) == 1,
              EVP_CIPHER_CTX_set_padding(ctx, padding ? 1 : 0) == 1
        else { throw .cipherFailure }

        var output = [UInt8](repeating: 0, count: input.count + blockSize)
        var total: Int32 = 0
        let ok: Bool = output.withUnsafeMutableBufferPointer { out in
            guard let o = out.baseAddress else { return false }
            var written: Int32 = 0
            if input.count > 0 {
                guard let i = input.baseAddress?.assumingMemoryBound(to: UInt8.self),
                      EVP_CipherUpdate(ctx, o, &written, i, Int32(input.count)) == 1 else { return false }
            }
            total = written
            guard EVP_CipherFinal_ex(ctx, o + Int(written), &written) == 1 else { return false }
            total += written
            return true
        }
        guard ok else {
            ERR_clear_error()
            if !encrypt { throw .invalidPadding }
            throw .cipherFailure
        }
        output.removeLast(output.count - Int(total))
        return output
    }
}
