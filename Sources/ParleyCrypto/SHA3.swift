import COpenSSL

/// SHA-3 and SHAKE (FIPS 202) through OpenSSL's EVP interface (libcrypto 3.0, the one Parley
/// already links for AES; its Keccak is assembly on x86-64 and AArch64).
///
/// OpenSSL 3.0 has no incremental squeeze (`EVP_DigestSqueeze` arrived in 3.3): a XOF's output
/// is asked for all at once. SHAKE output is prefix-stable (the first `n` bytes of a longer
/// output are the `n`-byte output), so a caller that turns out to need more output recomputes it
/// longer and continues where it stopped; see `KyberSampling.uniform`.
public enum SHA3 {
    public enum Algorithm: Sendable {
        case sha3_256, sha3_512, shake128, shake256

        /// Output size of the fixed-length functions; nil for the XOFs.
        public var digestSize: Int? {
            switch self {
            case .sha3_256: return 32
            case .sha3_512: return 64
            case .shake128, .shake256: return nil
            }
        }
    }

    /// The algorithm implementations, fetched from OpenSSL's default provider once (fetching per
    /// call costs a provider lookup with locks and string compares). Immutable once fetched.
    nonisolated(unsafe) static let sha3_256MD: OpaquePointer? = EVP_MD_fetch(nil, "SHA3-256", nil)
    nonisolated(unsafe) static let sha3_512MD: OpaquePointer? = EVP_MD_fetch(nil, "SHA3-512", nil)
    nonisolated(unsafe) static let shake128MD: OpaquePointer? = EVP_MD_fetch(nil, "SHAKE128", nil)
    nonisolated(unsafe) static let shake256MD: OpaquePointer? = EVP_MD_fetch(nil, "SHAKE256", nil)

    static func md(_ algorithm: Algorithm) -> OpaquePointer? {
        switch algorithm {
        case .sha3_256: return sha3_256MD
        case .sha3_512: return sha3_512MD
        case .shake128: return shake128MD
        case .shake256: return shake256MD
        }
    }

    public static func sha3_256<D: ByteView>(_ data: D) throws(CryptoError) -> [UInt8] {
        try hash(.sha3_256, data, outputCount: 32)
    }

    public static func sha3_512<D: ByteView>(_ data: D) throws(CryptoError) -> [UInt8] {
        try hash(.sha3_512, data, outputCount: 64)
    }

    /// The first `outputCount` bytes of SHAKE128(data).
    public static func shake128<D: ByteView>(_ data: D, outputCount: Int) throws(CryptoError) -> [UInt8] {
        try hash(.shake128, data, outputCount: outputCount)
    }

    /// The first `outputCount` bytes of SHAKE256(data).
    public static func shake256<D: ByteView>(_ data: D, outputCount: Int) throws(CryptoError) -> [UInt8] {
        try hash(.shake256, data, outputCount: outputCount)
    }

    private static func hash<D: ByteView>(_ algorithm: Algorithm, _ data: D, outputCount: Int) throws(CryptoError) -> [UInt8] {
        guard outputCount > 0 else { return [] }
        guard var context = KeccakContext() else { throw .digestFailure }
        var out = [UInt8](repeating: 0, count: outputCount)
        data.withBytes { input in
            out.withUnsafeMutableBytes { context.hash(algorithm, input, into: $0) }
        }
        guard context.ok else { throw .digestFailure }
        return out
    }
}

/// One EVP digest context, re-initialised for every hash of an operation (a Kyber operation
/// makes about 30). A failure of any OpenSSL call clears `ok`; the caller checks it once at the
/// end of the operation and throws, so the hot path carries no error plumbing. Freeing the
/// context cleanses the Keccak state (OpenSSL's SHA-3 `freectx` is `OPENSSL_clear_free`).
struct KeccakContext: ~Copyable {
    private let ctx: OpaquePointer
    private(set) var ok = true

    init?() {
        guard let ctx = EVP_MD_CTX_new() else { return nil }
        self.ctx = ctx
    }

    deinit { EVP_MD_CTX_free(ctx) }

    /// `output.count` bytes of `algorithm(first || second)`. For SHA3-256/512 `output.count` must
    /// be the digest size.
    mutating func hash(
        _ algorithm: SHA3.Algorithm, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer? = nil,
        into output: UnsafeMutableRawBufferPointer
    ) {
        guard ok, let md = SHA3.md(algorithm), let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self),
              EVP_DigestInit_ex2(ctx, md, nil) == 1
        else {
            fail(output)
            return
        }
        var good = true
        if let base = first.baseAddress, first.count > 0 { good = EVP_DigestUpdate(ctx, base, first.count) == 1 }
        if good, let second, let base = second.baseAddress, second.count > 0 {
            good = EVP_DigestUpdate(ctx, base, second.count) == 1
        }
        if good {
            if let size = algorithm.digestSize {
                var written: UInt32 = 0
                good = output.count == size && EVP_DigestFinal_ex(ctx, out, &written) == 1 && Int(written) == size
            } else {
                good = EVP_DigestFinalXOF(ctx, out, output.count) == 1
            }
        }
        if !good { fail(output) }
    }

    /// Records the failure and zeroes the output, so that nothing downstream reads
    /// uninitialised memory before the operation notices and throws.
    private mutating func fail(_ output: UnsafeMutableRawBufferPointer) {
        ok = false
        ERR_clear_error()
        if output.count > 0 { output.initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
