import Foundation
import ParleyCrypto

/// Account recovery codes: 128 random bits made at registration (and at each recovery), shown to the
/// client once, kept by the relay only as a SHA-256 hash (`sha256:` and 64 hexadecimal digits).
///
/// Why a fast hash: the code is 128 random bits, so a stolen database allows no offline search whatever the
/// hash (2¹²⁸ guesses); a slow password hash protects low-entropy secrets and would only be paid on every
/// registration (Argon2id at OWASP's minimum: about 25 ms of one core each here). The device credentials, also
/// random, are kept the same way (`Credentials`).
enum RecoveryCode {
    /// Random bytes of a code: 128 bits, beyond any guessing even without the rate limits.
    static let randomBytes = 16
    /// The prefix of a stored hash (the format and algorithm, should they ever change).
    static let hashPrefix = "sha256:"

    /// A new code: 8 groups of 4 lowercase hexadecimal digits separated by dashes.
    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(randomBytes)
        while bytes.count < randomBytes {
            withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
        }
        let hex = bytes.prefix(randomBytes).map { String(format: "%02x", $0) }.joined()
        let characters = Array(hex)
        return stride(from: 0, to: characters.count, by: 4).map { String(characters[$0..<$0 + 4]) }.joined(separator: "-")
    }

    /// The canonical form of a typed code (32 lowercase hexadecimal digits; dashes and spaces dropped), or nil
    /// when it cannot be a code.
    static func normalize(_ typed: String) -> String? {
        guard typed.utf8.count <= 128 else { return nil }
        let digits = typed.lowercased().filter { $0 != "-" && $0 != " " }
        guard digits.count == randomBytes * 2, digits.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        return digits
    }

    /// The stored form of a normalized code: `sha256:` and the SHA-256 of its UTF-8 bytes in hexadecimal.
    static func hash(_ normalized: String) -> String {
        hashPrefix + Credentials.hash(normalized).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether a normalized code matches a stored hash (constant-time comparison of the hashes).
    static func verify(_ normalized: String, against stored: String) -> Bool {
        Credentials.sameHash(Data(hash(normalized).utf8), Data(stored.utf8))
    }
}
