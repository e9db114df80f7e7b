import CSodium

/// Argon2id password hashing in libsodium's self-describing string form
/// (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`, at most 128 bytes): a random 16-byte salt per hash,
/// the parameters kept with it, verification in constant time (libsodium compares the derived
/// hash with `crypto_verify_32`-style code).
public enum PasswordHash {
    public enum Failure: Error, Equatable, Sendable {
        /// libsodium could not be initialised, or could not allocate the memory the parameters ask for.
        case hashingFailed
        /// Parameters outside what libsodium accepts for Argon2id.
        case invalidParameters
    }

    /// Hashes `secret` with Argon2id at `opsLimit` passes over `memLimit` bytes.
    public static func hash(_ secret: SecretBytes, opsLimit: UInt64, memLimit: Int) throws(Failure) -> String {
        guard Sodium.ready else { throw .hashingFailed }
        guard opsLimit >= UInt64(crypto_pwhash_argon2id_opslimit_min()), memLimit >= Int(crypto_pwhash_argon2id_memlimit_min())
        else { throw .invalidParameters }
        let size = Int(crypto_pwhash_argon2id_strbytes())
        var out = [CChar](repeating: 0, count: size)
        let status = secret.withBytes { bytes -> Int32 in
            var empty: CChar = 0
            return out.withUnsafeMutableBufferPointer { buffer -> Int32 in
                guard let base = buffer.baseAddress else { return -1 }
                return withUnsafeMutablePointer(to: &empty) { fallback in
                    crypto_pwhash_argon2id_str(
                        base, bytes.baseAddress?.assumingMemoryBound(to: CChar.self) ?? UnsafePointer(fallback), UInt64(bytes.count),
                        opsLimit, memLimit)
                }
            }
        }
        guard status == 0, let end = out.firstIndex(of: 0) else { throw .hashingFailed }
        return String(decoding: out[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `secret` matches `encoded` (a string from `hash`). A malformed `encoded` never matches.
    public static func verify(_ secret: SecretBytes, against encoded: String) -> Bool {
        guard Sodium.ready else { return false }
        let limit = Int(crypto_pwhash_argon2id_strbytes())
        var stored = Array(encoded.utf8CString)
        guard stored.count <= limit, encoded.hasPrefix("$argon2id$") else { return false }
        defer { for i in stored.indices { stored[i] = 0 } }
        return secret.withBytes { bytes -> Bool in
            var empty: CChar = 0
            return stored.withUnsafeBufferPointer { buffer -> Bool in
                guard let base = buffer.baseAddress else { return false }
                return withUnsafeMutablePointer(to: &empty) { fallback in
                    crypto_pwhash_argon2id_str_verify(
                        base, bytes.baseAddress?.assumingMemoryBound(to: CChar.self) ?? UnsafePointer(fallback), UInt64(bytes.count)) == 0
                }
            }
        }
    }
}
