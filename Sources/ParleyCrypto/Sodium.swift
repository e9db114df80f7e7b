import CSodium

/// One-time libsodium initialisation. `sodium_init` is idempotent and thread-safe; calling it
/// through this lazily initialised global makes every entry point safe to use first.
enum Sodium {
    static let ready: Bool = sodium_init() >= 0

    @inline(__always)
    static func ensureReady() throws(CryptoError) {
        guard ready else { throw .libraryInitialisationFailed }
    }
}
