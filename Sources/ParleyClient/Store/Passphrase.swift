import ParleyCrypto

/// The secret a user types to unlock a sealed `DeviceStore`. Its bytes live in a `SecretBytes`
/// buffer that is wiped when the last copy goes away. A `String` the caller built it from cannot
/// be wiped by Swift; prefer `init(bytes:)` from a buffer the caller wipes itself.
public struct Passphrase: Sendable {
    let secret: SecretBytes

    /// The UTF-8 bytes of `text`. An empty passphrase is accepted but offers no protection.
    public init(_ text: String) {
        var bytes = Array(text.utf8)
        defer { for i in bytes.indices { bytes[i] = 0 } }
        secret = SecretBytes(copying: bytes)
    }

    /// The bytes of `bytes` (for example read from a terminal or a file), which are then zeroed.
    public init(wiping bytes: inout [UInt8]) {
        secret = SecretBytes(copying: bytes)
        for i in bytes.indices { bytes[i] = 0 }
    }

    /// Raw passphrase bytes (for example from a platform keychain).
    public init(bytes: SecretBytes) {
        secret = bytes
    }
}

extension Passphrase: CustomStringConvertible {
    /// Never prints the secret.
    public var description: String { "Passphrase(redacted)" }
}
