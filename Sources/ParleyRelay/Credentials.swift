import Crypto
import Foundation

/// Device credentials: random tokens shown once, stored only as SHA-256 hashes, compared in constant time.
enum Credentials {
    /// 32 random bytes, base64url without padding (43 characters).
    static func newToken() -> String {
        randomBase64URL(byteCount: 32)
    }

    /// A random base64url string of `byteCount` random bytes.
    static func randomBase64URL(byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<byteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Base64URL.encode(Data(bytes))
    }

    static func hash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// Constant-time comparison of a presented token against a stored hash.
    static func verify(_ token: String, against storedHash: Data) -> Bool {
        constantTimeEqual(hash(token), storedHash)
    }

    /// Whether two byte strings are equal, in time that depends only on their lengths.
    static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) {
            difference |= x ^ y
        }
        return difference == 0
    }
}
