import Crypto
import Foundation

/// VAPID (RFC 8292): ES256 JWTs signed with the relay's P-256 key, sent as
/// `Authorization: vapid t=<jwt>, k=<public key>`.
struct VAPIDSigner: Sendable {
    /// Raw P-256 private scalar (32 bytes); the key type itself is not `Sendable`.
    private let rawPrivateKey: Data
    let subject: String
    /// Uncompressed public key, base64url: the `k` parameter and the browsers' `applicationServerKey`.
    let publicKeyBase64URL: String

    init(rawPrivateKey: Data, subject: String) throws {
        let key = try P256.Signing.PrivateKey(rawRepresentation: rawPrivateKey)
        self.rawPrivateKey = rawPrivateKey
        self.subject = subject
        self.publicKeyBase64URL = Base64URL.encode(key.publicKey.x963Representation)
    }

    /// The `Authorization` header value for a push to `endpoint`.
    func authorization(for endpoint: URL, now: Date = Date()) throws -> String {
        guard let scheme = endpoint.scheme, let host = endpoint.host else { throw RelayError.invalidField("push endpoint") }
        var audience = "\(scheme)://\(host)"
        if let port = endpoint.port { audience += ":\(port)" }
        let header = #"{"typ":"JWT","alg":"ES256"}"#
        let expiry = Int64(now.timeIntervalSince1970) + RelayLimits.vapidTokenLifetimeSeconds
        let claims = try JSONSerialization.data(
            withJSONObject: ["aud": audience, "exp": expiry, "sub": subject], options: [.sortedKeys])
        let signingInput = Base64URL.encode(Data(header.utf8)) + "." + Base64URL.encode(claims)
        let privateKey = try P256.Signing.PrivateKey(rawRepresentation: rawPrivateKey)
        let signature = try privateKey.signature(for: Data(signingInput.utf8))
        let token = signingInput + "." + Base64URL.encode(signature.rawRepresentation)
        return "vapid t=\(token), k=\(publicKeyBase64URL)"
    }
}

/// base64url without padding (RFC 4648 §5), as JWTs and Web Push use it.
enum Base64URL {
    static func encode(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
