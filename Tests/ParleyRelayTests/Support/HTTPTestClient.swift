import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyWire

/// Real HTTP calls to the relay over loopback.
struct HTTPTestClient {
    let port: Int

    struct Reply {
        let status: Int
        let body: Data
        /// The `Retry-After` header, if any.
        var retryAfter: String? = nil

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try WireCoding.decoder().decode(T.self, from: body)
        }

        var error: ErrorResponse? { try? decode(ErrorResponse.self) }
    }

    func raw(_ method: HTTPMethod, _ path: String, body: Data? = nil, authorization: String? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        // No pooled keep-alive connections: a relay stopped by one test must not wait for idle client connections.
        request.headers.add(name: "Connection", value: "close")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return Reply(
            status: Int(response.status.code), body: Data(buffer.readableBytesView), retryAfter: response.headers.first(name: "Retry-After"))
    }

    func call(_ method: HTTPMethod, _ path: String, _ as: DeviceCredentials? = nil) async throws -> Reply {
        try await raw(method, path, authorization: `as`?.authorizationHeader)
    }

    func call<B: Encodable>(_ method: HTTPMethod, _ path: String, _ as: DeviceCredentials? = nil, body: B) async throws
        -> Reply
    {
        try await raw(method, path, body: try WireCoding.encoder().encode(body), authorization: `as`?.authorizationHeader)
    }

    // MARK: flows used by many tests

    func register(_ name: String, keys: NewDeviceKeys = Fixtures.keys()) async throws -> DeviceCredentials {
        let reply = try await call(.POST, "/v1/accounts", body: RegisterAccountRequest(name: name, device: keys))
        guard reply.status == 201 else { throw TestFailure("register \(name): \(reply.status)") }
        return try reply.decode(DeviceCredentials.self)
    }

    /// Full link flow: code, claim, approve. Returns the new device's credentials.
    func link(from existing: DeviceCredentials, keys: NewDeviceKeys = Fixtures.keys(), blob: Data = Fixtures.bytes(64))
        async throws -> DeviceCredentials
    {
        let code = try await call(.POST, "/v1/devices/links", existing).decode(LinkCodeResponse.self)
        let claim = try await call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: keys))
        guard claim.status == 201 else { throw TestFailure("claim: \(claim.status)") }
        let credentials = try claim.decode(DeviceCredentials.self)
        let approve = try await call(
            .POST, "/v1/devices/links/\(code.code)/approve", existing, body: ApproveLinkRequest(provisioningBlob: blob))
        guard approve.status == 204 else { throw TestFailure("approve: \(approve.status)") }
        return credentials
    }

    func devices(of account: String, _ as: DeviceCredentials) async throws -> [DeviceInfo] {
        try await call(.GET, "/v1/accounts/\(account)/devices", `as`).decode(DeviceListResponse.self).devices
    }

    /// Sends one random ciphertext to every device of `recipient` and every other device of the sender.
    func sendToAll(from sender: DeviceCredentials, to recipient: String, content: Data = Fixtures.bytes(100)) async throws
        -> Reply
    {
        let theirs = try await devices(of: recipient, sender)
        let mine = try await devices(of: sender.account, sender)
        let own = recipient == sender.account
        let messages = theirs.filter { !own || $0.deviceId != sender.deviceId }.map {
            OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: content)
        }
        let ownMessages = own ? [] : mine.filter { $0.deviceId != sender.deviceId }.map {
            OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: content)
        }
        return try await call(
            .PUT, "/v1/messages/\(recipient)", sender,
            body: SendMessageRequest(messages: messages, ownDeviceMessages: ownMessages))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
