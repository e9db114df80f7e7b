import CSodium

/// One-time libsodium initialisation for the store's own calls (`sodium_init` is idempotent and
/// thread-safe).
enum SodiumSetup {
    static let ready: Bool = sodium_init() >= 0

    static func ensureReady() throws(DeviceStoreError) {
        guard ready else { throw .cryptoUnavailable }
    }
}
