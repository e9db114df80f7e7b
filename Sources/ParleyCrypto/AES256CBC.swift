import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        try runToArray(encrypt: true, input: plaintext, key: key, iv: iv, padding: padding)
    }

    public static func decrypt(
        _ ciphertext: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool = true
    ) throws(CryptoError) -> [UInt8] {
        guard ciphertext.count % blockSize == 0, !(padding && ciphertext.isEmpty) else { throw .invalidPadding }
        return try runToArray(encrypt: false, input: ciphertext, key: key, iv: iv, padding: padding)
    }

    /// The length of the PKCS#7-padded ciphertext of `plaintextCount` bytes.
    @inlinable
    public static func paddedCount(_ plaintextCount: Int) -> Int { (plaintextCount / blockSize + 1) * blockSize }

    /// Encrypts with PKCS#7 padding straight into `output` (at least `paddedCount(plaintext.count)`
    /// bytes, for example the body of a message being built); returns the bytes written.
    public static func encrypt(
        _ plaintext: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        precondition(output.count >= paddedCount(plaintext.count), "AES256CBC.encrypt(into:): output too small")
        guard let o = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { throw .cipherFailure }
        return try run(encrypt: true, input: plaintext, key: key, iv: iv, padding: true, output: o)
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

    private static func runToArray(
        encrypt: Bool, input: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool
    ) throws(CryptoError) -> [UInt8] {
        var failure: CryptoError? = nil
        // Room for the input and one block: padding adds at most one block when encrypting and
        // OpenSSL may use a block's room when decrypting.
        let output = [UInt8](unsafeUninitializedCapacity: input.count + blockSize) { buffer, count in
            count = 0
            guard let o = buffer.baseAddress else { failure = .cipherFailure; return }
            do throws(CryptoError) {
                count = try run(encrypt: encrypt, input: input, key: key, iv: iv, padding: padding, output: o)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return output
    }

    /// Runs the cipher over `input` into `output`, which has room for `input.count` plus one block
    /// (or, encrypting with padding, for the padded length); returns the bytes written.
    private static func run(
        encrypt: Bool, input: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, iv: UnsafeRawBufferPointer, padding: Bool,
        output o: UnsafeMutablePointer<UInt8>
    ) throws(CryptoError) -> Int {
        guard key.count == keySize else { throw .invalidKeyLength(expected: keySize, actual: key.count) }
        guard iv.count == blockSize else { throw .invalidIVLength(iv.count) }
        if !padding && input.count % blockSize != 0 { throw .invalidPadding }
        guard let contexts = ThreadContexts.current() else { throw .cipherFailure }
        let ctx = padding ? contexts.padded : contexts.unpadded
        guard let k = key.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let v = iv.baseAddress?.assumingMemoryBound(to: UInt8.self),
              EVP_CipherInit_ex2(ctx, nil, k, v, encrypt ? 1 : 0, nil) == 1
        else { throw .cipherFailure }

        var written: Int32 = 0
        var total: Int32 = 0
        var ok = true
        if input.count > 0 {
            if let i = input.baseAddress?.assumingMemoryBound(to: UInt8.self),
               EVP_CipherUpdate(ctx, o, &written, i, Int32(input.count)) == 1 {
                total = written
            } else {
                ok = false
            }
        }
        if ok {
            if EVP_CipherFinal_ex(ctx, o + Int(total), &written) == 1 { total += written } else { ok = false }
        }
        guard ok else {
            ERR_clear_error()
            if !encrypt { throw .invalidPadding }
            throw .cipherFailure
        }
        return Int(total)
    }

    /// One padded and one unpadded cipher context per thread, set up once and re-keyed for each
    /// message (`EVP_CipherInit_ex2` with no cipher keeps the provider context and the padding
    /// mode). Creating, configuring and freeing a context per message cost more than the AES
    /// itself. A context keeps the last message key's schedule until the next call on its thread
    /// or the thread's exit (then it is cleansed by `EVP_CIPHER_CTX_free`); the chain keys that
    /// derive every later key are in memory for the session's life anyway.
    private final class ThreadContexts {
        let padded: OpaquePointer
        let unpadded: OpaquePointer

        private init?() {
            guard let cipher = AES256CBC.cipher, let padded = EVP_CIPHER_CTX_new() else { return nil }
            guard let unpadded = EVP_CIPHER_CTX_new() else {
                EVP_CIPHER_CTX_free(padded)
                return nil
            }
            self.padded = padded
            self.unpadded = unpadded
            let zeros = [UInt8](repeating: 0, count: 32)
            guard EVP_CipherInit_ex2(padded, cipher, zeros, zeros, 1, nil) == 1,
                  EVP_CipherInit_ex2(unpadded, cipher, zeros, zeros, 1, nil) == 1,
                  EVP_CIPHER_CTX_set_padding(padded, 1) == 1,
                  EVP_CIPHER_CTX_set_padding(unpadded, 0) == 1
            else { return nil }
        }

        deinit {
            EVP_CIPHER_CTX_free(padded)
            EVP_CIPHER_CTX_free(unpadded)
        }

        private static let key: pthread_key_t? = {
            var key = pthread_key_t()
            let created = pthread_key_create(&key) { pointer in
                guard let pointer else { return }
                Unmanaged<ThreadContexts>.fromOpaque(pointer).release()
            }
            return created == 0 ? key : nil
        }()

        static func current() -> ThreadContexts? {
            guard let key else { return nil }
            if let existing = pthread_getspecific(key) {
                return Unmanaged<ThreadContexts>.fromOpaque(existing).takeUnretainedValue()
            }
            guard let made = ThreadContexts() else { return nil }
            guard pthread_setspecific(key, Unmanaged.passRetained(made).toOpaque()) == 0 else {
                Unmanaged.passUnretained(made).release()
                return nil
            }
            return made
        }
    }
}
