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
        var bytes = [UInt8](repeating: 0, count: byteCount)
        var index = 0
        while index < byteCount {
            // Eight bytes per call of the system generator.
            withUnsafeBytes(of: generator.next() as UInt64) { word in
                for byte in word where index < byteCount {
                    bytes[index] = byte
                    index += 1
                }
            }
        }
        return base64URL(bytes)
    }

    /// Base64url without padding (RFC 4648 §5), as `Base64URL.encode`, in one pass over the bytes (tokens and
    /// tickets are made often).
    private static func base64URL(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        for byte in Data(bytes).base64EncodedString().utf8 {
            switch byte {
            case UInt8(ascii: "+"): out.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): continue
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// Constant-time comparison of a presented token against a stored hash.
    static func verify(_ token: String, against storedHash: Data) -> Bool {
        sameHash(hash(token), storedHash)
    }

    /// Constant-time comparison of two credential hashes.
    static func sameHash(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) {
            difference |= x ^ y
        }
        return difference == 0
    }
}
