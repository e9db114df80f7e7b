import Foundation
import ParleyCrypto

/// What the existing device shows the new one (as a QR code or text):
/// `parley-link:<code>:<base64url(E.pub)>`.
///
/// * `code` is the relay's link code: 22 characters of base64url (16 random bytes).
/// * `E.pub` is the existing device's ephemeral Curve25519 public key in libsignal's serialized
///   form (`0x05 || u`, 33 bytes), base64url without padding (44 characters).
///
/// The key never passes through the relay: the relay sees the code only, so it cannot compute the
/// key that protects the provisioning blob.
public struct LinkString: Sendable, Equatable, CustomStringConvertible {
    public static let scheme = "parley-link"
    public static let codeLength = 22
    public static let keyTextLength = 44
    /// Longest accepted input (scheme + separators + code + key), to refuse oversized input early.
    static let maxLength = 128

    public let code: String
    public let ephemeralPublicKey: PublicKey

    public init(code: String, ephemeralPublicKey: PublicKey) {
        self.code = code
        self.ephemeralPublicKey = ephemeralPublicKey
    }

    /// Parses a link string; surrounding whitespace is ignored, anything else unexpected is refused.
    public init(parsing text: String) throws(LinkError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count <= Self.maxLength else { throw .malformedLinkString("too long") }
        let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformedLinkString("expected 3 fields separated by ':'") }
        guard parts[0] == Self.scheme else { throw .malformedLinkString("not a \(Self.scheme) string") }
        let code = String(parts[1])
        guard code.utf8.count == Self.codeLength, Self.isBase64URL(code), Base64URL.decode(code)?.count == 16 else {
            throw .malformedLinkString("the code must be \(Self.codeLength) base64url characters")
        }
        let keyText = String(parts[2])
        guard keyText.utf8.count == Self.keyTextLength, Self.isBase64URL(keyText),
              let keyBytes = Base64URL.decode(keyText), keyBytes.count == PublicKey.serializedSize
        else { throw .malformedLinkString("the key must be \(PublicKey.serializedSize) bytes in base64url") }
        guard let key = try? PublicKey(serialized: keyBytes) else {
            throw .malformedLinkString("the key is not a Curve25519 public key")
        }
        self.code = code
        self.ephemeralPublicKey = key
    }

    /// The text form.
    public var text: String {
        "\(Self.scheme):\(code):\(Base64URL.encode(ephemeralPublicKey.serialized))"
    }

    public var description: String { text }

    package static func isBase64URL(_ text: String) -> Bool {
        text.utf8.allSatisfy { byte in
            (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                || byte == 0x2D || byte == 0x5F
        }
    }
}

/// Base64url without padding (RFC 4648 §5), strict: the decoded bytes must encode back to the
/// same text (no stray bits in the last character).
package enum Base64URL {
    package static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    package static func decode(_ text: String) -> [UInt8]? {
        guard LinkString.isBase64URL(text), text.utf8.count % 4 != 1 else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while standard.utf8.count % 4 != 0 { standard += "=" }
        guard let data = Data(base64Encoded: standard) else { return nil }
        let bytes = [UInt8](data)
        guard encode(bytes) == text else { return nil }
        return bytes
    }
}
