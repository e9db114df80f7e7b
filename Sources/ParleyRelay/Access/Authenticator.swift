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
        try await authenticateWithCredential(headers, allowPending: allowPending).device
    }

    /// `authenticate`, also returning the stored hash of the credential that passed (what a WebSocket ticket or
    /// session is checked against later).
    func authenticateWithCredential(_ headers: HTTPFields, allowPending: Bool = false) async throws
        -> (device: AuthenticatedDevice, credentialHash: Data)
    {
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
        return (
            AuthenticatedDevice(accountId: stored.accountId, account: stored.account, deviceId: stored.deviceId),
            stored.credentialHash
        )
    }
}

extension Authenticator {
    /// Whether `device` still exists, is active and has the credential whose hash is `credentialHash`: a ticket
    /// when it is redeemed, and a session when it registers, are checked against the store again (the device
    /// may have been removed since its credentials were verified).
    func stillValid(_ device: AuthenticatedDevice, credentialHash: Data) async throws -> Bool {
        guard let stored = try await store.deviceAuth(account: device.account, deviceId: device.deviceId) else {
            return false
        }
        return stored.active && stored.accountId == device.accountId && Credentials.sameHash(stored.credentialHash, credentialHash)
    }
}
