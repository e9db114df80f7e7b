import ParleyCrypto

/// The 32-byte key a sealed store's values are sealed under. Argon2id derives it from the passphrase
/// (or, after `DeviceStore.changePassphrase`, it is unwrapped with the Argon2id output): holding it opens
/// the store without running Argon2id again, which is what `parley unlock` keeps in the kernel keyring.
/// Wiped when the last copy goes away; never printed.
public struct StoreKey: Sendable {
    let secret: SecretBytes

    init(_ secret: SecretBytes) { self.secret = secret }

    /// A key from its raw bytes (e.g. read back from the keyring); nil unless they are 32 bytes.
    public init?(bytes: SecretBytes) {
        guard bytes.count == KeyDerivationParameters.keySize else { return nil }
        secret = bytes
    }

    /// The raw bytes, for the duration of `body` only.
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try secret.withBytes(body)
    }
}

extension StoreKey: CustomStringConvertible {
    /// Never prints the key.
    public var description: String { "StoreKey(redacted)" }
}

/// What opens a sealed store: its passphrase (Argon2id runs, as slow as the store's parameters make
/// it), or the `StoreKey` an earlier unlock derived (no Argon2id).
public enum StoreUnlock: Sendable {
    case passphrase(Passphrase)
    case key(StoreKey)
}
