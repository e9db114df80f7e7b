import Foundation
import Hummingbird

/// HTTP Basic authentication of devices: user `account.deviceId`, password = the device credential.
struct Authenticator: Sendable {
    let store: any RelayStore

    /// Parses `Authorization: Basic base64(account.deviceId:credential)`.
    static func parse(_ header: String?) -> (account: String, deviceId: UInt32, token: String)? {
        guard let header, header.count < 512 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Data(base64Encoded: String(parts[1])),
            let text = String(data: decoded, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else { return nil }
        let user = text[..<colon]
        let token = String(text[text.index(after: colon)...])
        guard let dot = user.lastIndex(of: "."), let deviceId = UInt32(user[user.index(after: dot)...]) else {
            return nil
        }
        return (String(user[..<dot]), deviceId, token)
    }

    /// Verifies the credentials of a request. Pending (linked, not yet approved) devices pass only with `allowPending`.
    func authenticate(_ headers: HTTPFields, allowPending: Bool = false) async throws -> AuthenticatedDevice {
        guard let (account, deviceId, token) = Self.parse(headers[.authorization]) else {
            throw RelayError.unauthorized
        }
        guard let stored = try await store.deviceAuth(account: account, deviceId: deviceId) else {
            _ = Credentials.verify(token, against: Data(count: 32))
            throw RelayError.unauthorized
        }
        guard Credentials.verify(token, against: stored.credentialHash), stored.active || allowPending else {
            throw RelayError.unauthorized
        }
        return AuthenticatedDevice(accountId: stored.accountId, account: stored.account, deviceId: stored.deviceId)
    }
}
