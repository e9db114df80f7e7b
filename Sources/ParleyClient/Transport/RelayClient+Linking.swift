import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyWire

/// The device-linking endpoints (Specs/relay-protocol.md §4.5).
extension RelayClient {
    /// Existing device: a new link code.
    public func createLinkCode() async throws -> LinkCodeResponse {
        try await perform(.POST, "/v1/devices/links", body: nil, as: LinkCodeResponse.self)
    }

    /// New device (no credentials needed): claims `request.code` with its keys; returns the
    /// pending device's credentials.
    public func claimLink(_ request: ClaimLinkRequest) async throws -> DeviceCredentials {
        try await perform(.POST, "/v1/devices/links/claim", body: try WireCoding.encoder().encode(request), as: DeviceCredentials.self)
    }

    /// Existing device: who claimed `code`.
    public func linkInfo(code: String) async throws -> LinkClaimInfo {
        let segment = try Self.pathSegment(code)
        return try await perform(.GET, "/v1/devices/links/\(segment)", body: nil, as: LinkClaimInfo.self)
    }

    /// Existing device: approves the claim of `code` with the encrypted provisioning blob.
    public func approveLink(code: String, _ request: ApproveLinkRequest) async throws {
        let segment = try Self.pathSegment(code)
        try await performNoContent(.POST, "/v1/devices/links/\(segment)/approve", body: try WireCoding.encoder().encode(request))
    }

    /// New device (pending credentials): the state of its link and, once approved, the blob.
    public func linkStatus() async throws -> LinkStatusResponse {
        try await perform(.GET, "/v1/devices/links/status", body: nil, as: LinkStatusResponse.self)
    }

    /// Removes device `deviceId` of the caller's account (itself included): `204`, `404` if there is no such device.
    public func removeDevice(_ deviceId: UInt32) async throws {
        try await performNoContent(.DELETE, "/v1/devices/\(deviceId)", body: nil)
    }

    /// A link code is base64url; anything else is refused before it reaches a URL.
    static func pathSegment(_ code: String) throws -> String {
        guard !code.isEmpty, code.utf8.count <= 64, LinkString.isBase64URL(code) else {
            throw RelayClientError.badResponse("not a link code")
        }
        return code
    }

    /// A request whose success answer has no body (204).
    func performNoContent(_ method: HTTPMethod, _ path: String, body: Data?) async throws {
        _ = try await execute(method, path, body: body, answerLimit: 1024 * 1024)
    }
}
