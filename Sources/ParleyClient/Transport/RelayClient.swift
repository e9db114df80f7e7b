import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyWire

/// The relay's HTTP API (Specs/relay-protocol.md) for one device.
public struct RelayClient: Sendable {
    /// `http://host:port` or `https://host:port`, no trailing slash.
    public let baseURL: String
    public let credentials: DeviceCredentials?
    let http: HTTPClient

    public init(baseURL: String, credentials: DeviceCredentials? = nil, http: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.credentials = credentials
        self.http = http
    }

    public func authenticated(as credentials: DeviceCredentials) -> RelayClient {
        RelayClient(baseURL: baseURL, credentials: credentials, http: http)
    }

    // MARK: endpoints

    /// `GET /healthz`: whether the relay answers (unauthenticated).
    public func health() async throws -> HealthResponse {
        try await request(.GET, "/healthz", as: HealthResponse.self)
    }

    public func register(name: String, device: NewDeviceKeys) async throws -> DeviceCredentials {
        try await request(.POST, "/v1/accounts", body: RegisterAccountRequest(name: name, device: device), as: DeviceCredentials.self)
    }

    public func devices(of account: String) async throws -> [DeviceInfo] {
        try await request(.GET, "/v1/accounts/\(account)/devices", as: DeviceListResponse.self).devices
    }

    public func uploadPreKeys(_ upload: UploadPreKeysRequest) async throws -> PreKeyStatusResponse {
        try await request(.PUT, "/v1/keys", body: upload, as: PreKeyStatusResponse.self)
    }

    /// Bundles of `deviceId` of `account`, or of all its devices when nil.
    public func bundles(account: String, deviceId: UInt32? = nil) async throws -> PreKeyBundleResponse {
        try await request(.GET, "/v1/keys/\(account)/\(deviceId.map(String.init) ?? "*")", as: PreKeyBundleResponse.self)
    }

    /// Bundles of many accounts in one request (`POST /v1/keys/bundles`; all active devices of each target, or
    /// its `deviceIds`): how sessions with the members of a large group are set up. Unknown accounts come back
    /// in `unknownAccounts`. A `429` carries the seconds to wait in `Retry-After`.
    public func bundles(for targets: [BundleRequestTarget]) async throws -> PreKeyBundleBatchResponse {
        try await request(
            .POST, "/v1/keys/bundles", body: PreKeyBundleBatchRequest(accounts: targets), as: PreKeyBundleBatchResponse.self)
    }

    /// Sends per-device ciphertexts. Throws `.mismatchedDevices` or `.staleDevices` when the
    /// relay refuses the device list (nothing was stored then).
    public func send(to account: String, _ message: SendMessageRequest) async throws -> SendMessageResponse {
        try await request(.PUT, "/v1/messages/\(account)", body: message, as: SendMessageResponse.self)
    }

    // MARK: plumbing

    func request<R: Decodable>(_ method: HTTPMethod, _ path: String, as: R.Type) async throws -> R {
        try await perform(method, path, body: nil, as: R.self)
    }

    func request<B: Encodable, R: Decodable>(_ method: HTTPMethod, _ path: String, body: B, as: R.Type) async throws -> R {
        try await perform(method, path, body: try WireCoding.encoder().encode(body), as: R.self)
    }

    func perform<R: Decodable>(_ method: HTTPMethod, _ path: String, body: Data?, as: R.Type) async throws -> R {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let credentials { request.headers.add(name: "Authorization", value: credentials.authorizationHeader) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = Data((try await response.body.collect(upTo: 16 * 1024 * 1024)).readableBytesView)
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else { throw Self.error(status: status, body: bytes) }
        do {
            return try WireCoding.decoder().decode(R.self, from: bytes)
        } catch {
            throw RelayClientError.badResponse("\(R.self): \(error)")
        }
    }

    static func error(status: Int, body: Data) -> RelayClientError {
        guard let answer = try? WireCoding.decoder().decode(ErrorResponse.self, from: body) else {
            return .rejected(status: status, code: nil, message: String(decoding: body.prefix(200), as: UTF8.self))
        }
        switch status {
        case 409 where answer.missingDevices != nil || answer.extraDevices != nil:
            return .mismatchedDevices(account: answer.account, missing: answer.missingDevices ?? [], extra: answer.extraDevices ?? [])
        case 410:
            return .staleDevices(account: answer.account, stale: answer.staleDevices ?? [])
        default:
            return .rejected(status: status, code: answer.code, message: answer.message)
        }
    }
}
