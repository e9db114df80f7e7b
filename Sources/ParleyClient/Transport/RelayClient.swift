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
    /// How a `429` is waited out before it becomes `.rateLimited`.
    public let rateLimit: RateLimitPolicy

    public init(baseURL: String, credentials: DeviceCredentials? = nil, http: HTTPClient = .shared, rateLimit: RateLimitPolicy = RateLimitPolicy()) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.credentials = credentials
        self.http = http
        self.rateLimit = rateLimit
    }

    public func authenticated(as credentials: DeviceCredentials) -> RelayClient {
        RelayClient(baseURL: baseURL, credentials: credentials, http: http, rateLimit: rateLimit)
    }

    // MARK: endpoints

    /// `GET /healthz`: whether the relay answers (unauthenticated).
    public func health() async throws -> HealthResponse {
        try await request(.GET, "/healthz", as: HealthResponse.self)
    }

    public func register(name: String, device: NewDeviceKeys) async throws -> DeviceCredentials {
        try await request(.POST, "/v1/accounts", body: RegisterAccountRequest(name: name, device: device), as: DeviceCredentials.self)
    }

    /// `POST /v1/accounts/recover`: `device` replaces every device of `name` (see `RecoverAccountRequest`).
    public func recover(name: String, recoveryCode: String, device: NewDeviceKeys) async throws -> DeviceCredentials {
        try await request(
            .POST, "/v1/accounts/recover", body: RecoverAccountRequest(name: name, recoveryCode: recoveryCode, device: device),
            as: DeviceCredentials.self)
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
        let bytes = try await execute(method, path, body: body, answerLimit: Self.maxAnswerBytes)
        do {
            return try WireCoding.decoder().decode(R.self, from: bytes)
        } catch {
            throw RelayClientError.badResponse("\(R.self): \(error)")
        }
    }

    /// Largest answer body read (a batch of 500 accounts' bundles is well under it).
    static let maxAnswerBytes = 16 * 1024 * 1024

    /// Sends the request; returns the body of a 2xx answer. A `429` is retried after the relay's `Retry-After`
    /// while the waits of this request stay within `rateLimit.maxTotalWaitSeconds` in all (each announced to
    /// `rateLimit.onWait` first); beyond that it throws `.rateLimited`. The relay refuses a rate-limited request
    /// before doing any of it, so sending it again is safe. Other error answers throw at once.
    func execute(_ method: HTTPMethod, _ path: String, body: Data?, answerLimit: Int) async throws -> Data {
        var waited = 0
        while true {
            var request = HTTPClientRequest(url: baseURL + path)
            request.method = method
            if let credentials { request.headers.add(name: "Authorization", value: credentials.authorizationHeader) }
            if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            let response = try await http.execute(request, timeout: .seconds(30))
            let bytes = Data((try await response.body.collect(upTo: answerLimit)).readableBytesView)
            let status = Int(response.status.code)
            if (200..<300).contains(status) { return bytes }
            guard status == 429 else { throw Self.error(status: status, body: bytes, authenticated: credentials != nil) }
            let seconds = RateLimitPolicy.retryAfterSeconds(response.headers.first(name: "Retry-After"))
            guard waited + seconds <= rateLimit.maxTotalWaitSeconds else {
                let message = (try? WireCoding.decoder().decode(ErrorResponse.self, from: bytes))?.message ?? "rate limit exceeded"
                throw RelayClientError.rateLimited(retryAfterSeconds: seconds, message: message)
            }
            rateLimit.onWait?(seconds)
            try await Task.sleep(for: .seconds(seconds))
            waited += seconds
        }
    }

    /// The typed error for an answer `status` with `body`. A `401` to an authenticated request is `.deviceRemoved`
    /// (relay-protocol.md §1.1, §4.4): only a removed (or never activated) device's credential is refused.
    static func error(status: Int, body: Data, authenticated: Bool = false) -> RelayClientError {
        if status == 401 && authenticated { return .deviceRemoved }
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

/// How a client waits out the relay's rate limits (`429 Too Many Requests` with `Retry-After`).
public struct RateLimitPolicy: Sendable {
    /// The longest one request waits in all, over its retries, before `.rateLimited` is thrown. 30 s: a command
    /// stays responsive (a send that would wait longer stays in the outbox for the next command or flush),
    /// while the short waits of a large group's set-up (the relay's per-address request bucket refills within
    /// a second or two) are waited out instead of deferring the message.
    public static let defaultMaxTotalWaitSeconds = 30
    /// A `Retry-After` beyond this (a day) is read as this: an absurd value must not overflow a wait.
    public static let maxRetryAfterSeconds = 86_400

    public var maxTotalWaitSeconds: Int
    /// Told before each wait, with its length in seconds (the CLI prints "rate limited by the relay; retrying
    /// in N s"). Called from the requesting task.
    public var onWait: (@Sendable (Int) -> Void)?

    public init(maxTotalWaitSeconds: Int = RateLimitPolicy.defaultMaxTotalWaitSeconds, onWait: (@Sendable (Int) -> Void)? = nil) {
        self.maxTotalWaitSeconds = maxTotalWaitSeconds
        self.onWait = onWait
    }

    /// The seconds a `Retry-After` value asks for: delay-seconds (what the relay sends), at least 1; a missing
    /// or unreadable value (an HTTP date included) means 1 s.
    static func retryAfterSeconds(_ value: String?) -> Int {
        guard let value, let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds > 0 else { return 1 }
        return min(seconds, maxRetryAfterSeconds)
    }
}
