import Crypto
import Foundation
import ParleyFormats

/// The relay's VAPID application server key (RFC 8292 §3.2): an uncompressed P-256 point (65 bytes, `0x04 || X || Y`)
/// as base64url without padding. It is checked before it is used or stored: the exact encoding (canonical
/// base64url, no padding, 87 characters), the length and form, and that the point is on the curve (BoringSSL's
/// libcrypto through swift-crypto, which also refuses the point at infinity and coordinates ≥ p).
public struct VAPIDPublicKey: Sendable, Equatable {
    /// Bytes of an uncompressed P-256 point.
    public static let rawLength = 65
    /// Characters of its unpadded base64url form: ceil(65 × 4 / 3).
    public static let encodedLength = 87

    /// `0x04 || X || Y`.
    public let rawRepresentation: Data

    public init(base64URL text: String) throws(PushError) {
        guard text.utf8.count == Self.encodedLength else {
            throw .invalidVAPIDKey("\(text.utf8.count) characters; an uncompressed P-256 key is \(Self.encodedLength)")
        }
        // Strict: the base64url alphabet only, no padding, and the bytes encode back to the same text.
        guard let raw = Base64URL.decode(text) else { throw .invalidVAPIDKey("not canonical base64url without padding") }
        try self.init(rawRepresentation: Data(raw))
    }

    public init(rawRepresentation raw: Data) throws(PushError) {
        guard raw.count == Self.rawLength else { throw .invalidVAPIDKey("\(raw.count) bytes; an uncompressed P-256 key is 65") }
        guard raw.first == 0x04 else { throw .invalidVAPIDKey("not an uncompressed point (first byte must be 0x04)") }
        do {
            _ = try P256.Signing.PublicKey(x963Representation: raw)
        } catch {
            throw .invalidVAPIDKey("not a point on the P-256 curve")
        }
        self.rawRepresentation = raw
    }

    /// As the relay publishes it and browsers take it (`applicationServerKey`).
    public var base64URL: String { Base64URL.encode(Array(rawRepresentation)) }

    /// A short form to show and compare by eye: the first 8 bytes of SHA-256 of the point, hex, in pairs.
    public var fingerprint: String { Self.fingerprint(raw: rawRepresentation) }

    static func fingerprint(raw: Data) -> String {
        SHA256.hash(data: raw).prefix(8).map { String(format: "%02x", $0) }.joined(separator: ":")
    }

    static func fingerprint(base64URL: String) -> String {
        Base64URL.decode(base64URL).map { fingerprint(raw: Data($0)) } ?? "?"
    }
}
