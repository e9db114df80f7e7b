/// What went wrong with a KEM key, ciphertext or operation. The first three are libsignal's
/// deserialization errors (`NoKeyTypeIdentifier`, `BadKEMKeyType`, `BadKEMKeyLength` /
/// `BadKEMCiphertextLength`), which the protocol maps to its reject reasons.
public enum KEMError: Error, Equatable, Sendable {
    /// The serialized key or ciphertext was empty: no type byte.
    case noKeyType
    /// The type byte names no KEM Parley implements (only 0x08, Kyber1024, today).
    case badKeyType(UInt8)
    /// The serialized length (type byte included) was not the one of its key type.
    case badLength(KEMObject, expected: Int, actual: Int)
    /// A key-generation seed or encapsulation randomness of the wrong size.
    case badRandomnessLength(expected: Int, actual: Int)
    /// OpenSSL failed inside SHA-3 or SHAKE (allocation failure or a broken library).
    case hashFailure

    /// The reject reason of the shared vectors (`no_key_type`, `bad_key_type`, `bad_length`),
    /// nil for the errors that are not about a serialized value.
    public var reason: String? {
        switch self {
        case .noKeyType: return "no_key_type"
        case .badKeyType: return "bad_key_type"
        case .badLength: return "bad_length"
        case .badRandomnessLength, .hashFailure: return nil
        }
    }
}

/// Which serialized KEM value an error is about.
public enum KEMObject: String, Sendable {
    case publicKey = "public_key"
    case secretKey = "secret_key"
    case ciphertext
}
