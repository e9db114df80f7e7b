import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle

/// A real local HTTP push service (RFC 8030) for the relay's and the client's tests: verifies the VAPID JWT
/// (RFC 8292: ES256 signature, audience, expiry) of every push, records what arrived, and answers with scripted
/// status codes.
public final class PushReceiver: Sendable {
    public struct Push: Sendable {
        public let path: String
        /// The JWT verified: ES256 by `k`, `aud` = this receiver's origin, `exp` in the future and within 24 h,
        /// a non-empty `sub`.
        public let vapidValid: Bool
        /// The `k` parameter (the relay's VAPID public key, base64url).
        public let publicKey: String?
        /// The JWT's `aud` and `exp` claims as sent (nil when unreadable).
        public let audience: String?
        public let expiry: Double?
        public let bodyBytes: Int
        public let ttl: String?
        public let method: String
        public let host: String?
        /// Every header, `name: value` per line (to check that nothing content-bearing travelled in one).
        public let headerText: String
        /// `Content-Encoding` (RFC 8291 payloads say `aes128gcm`); nil for a content-free push.
        public let contentEncoding: String?
        /// When it arrived.
        public let receivedAt: Date
    }

    public actor Log {
        public private(set) var pushes: [Push] = []
        private var scripts: [String: [Int]] = [:]
        public private(set) var redirects: [String: String] = [:]

        func record(_ push: Push) -> Int {
            pushes.append(push)
            guard var script = scripts[push.path], !script.isEmpty else { return 201 }
            let status = script.removeFirst()
            scripts[push.path] = script
            return status
        }

        /// Answers pushes to `path` with `302 Found` to `location`.
        public func redirect(_ path: String, to location: String) {
            redirects[path] = location
        }

        /// Answers the next pushes to `path` with these statuses (then 201).
        public func script(_ path: String, _ statuses: [Int]) {
            scripts[path] = statuses
        }

        public func pushes(to path: String) -> [Push] {
            pushes.filter { $0.path == path }
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let port: Int
    public let log: Log
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, log: Log, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.log = log
        self.group = group
        self.task = task
    }

    /// `http://127.0.0.1:<port>`: the VAPID audience of every push to this receiver.
    public var origin: String { "http://127.0.0.1:\(port)" }

    public func url(_ path: String) -> String { origin + path }

    public static func start() async throws -> PushReceiver {
        let log = Log()
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let (audienceStream, audienceContinuation) = AsyncStream<String>.makeStream()
        let audienceBox = AudienceBox()
        let router = Router()
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let audience = await audienceBox.value
            let authorization = request.headers[.authorization]
            let verdict = verify(authorization, audience: audience)
            let push = Push(
                path: request.uri.path, vapidValid: verdict.valid, publicKey: verdict.key, audience: verdict.audience,
                expiry: verdict.expiry, bodyBytes: body.readableBytes,
                ttl: HTTPField.Name("TTL").flatMap { request.headers[$0] }, method: "\(request.method)",
                host: request.head.authority ?? HTTPField.Name("Host").flatMap { request.headers[$0] },
                headerText: request.headers.map { "\($0.name.rawName): \($0.value)" }.joined(separator: "\n"),
                contentEncoding: request.headers[.contentEncoding], receivedAt: Date())
            let status = await log.record(push)
            // Close after each push so that stopping the receiver never waits for idle keep-alive connections.
            if let location = await log.redirects[request.uri.path] {
                return Response(status: .found, headers: [.connection: "close", .location: location])
            }
            return Response(status: .init(code: status), headers: [.connection: "close"])
        }
        router.post("/push/:id", use: handler)
        // Where a redirect points: any method is recorded (a client that follows it shows up here).
        router.on("/elsewhere/:id", method: .get, use: handler)
        router.on("/elsewhere/:id", method: .post, use: handler)
        var logger = Logger(label: "push-receiver")
        logger.logLevel = .warning
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                audienceContinuation.yield("http://127.0.0.1:\(port)")
                audienceContinuation.finish()
                portContinuation.yield(port)
                portContinuation.finish()
            }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var iterator = portStream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw Failure(description: "push receiver did not start") }
        var audienceIterator = audienceStream.makeAsyncIterator()
        if let audience = await audienceIterator.next() { await audienceBox.set(audience) }
        return PushReceiver(port: port, log: log, group: group, task: task)
    }

    /// Stops the receiver; throws if it has not stopped within 10 s.
    public func stop() async throws {
        let (group, task) = (self.group, self.task)
        let done = StopFlag()
        let stopping = Task {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            await done.set()
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if await done.value { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
        stopping.cancel()
        throw Failure(description: "push receiver did not stop within 10 s")
    }

    /// What `verify` found in an `Authorization` header.
    public struct Verdict: Sendable {
        public let valid: Bool
        public let key: String?
        public let audience: String?
        public let expiry: Double?
    }

    /// RFC 8292 check: `vapid t=<JWT>, k=<key>`; ES256 signature by k; aud = `audience`; exp in the future and
    /// within 24 h; a non-empty `sub`.
    public static func verify(_ header: String?, audience: String) -> Verdict {
        guard let header, header.hasPrefix("vapid ") else { return Verdict(valid: false, key: nil, audience: nil, expiry: nil) }
        var token: String?
        var key: String?
        for part in header.dropFirst(6).split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("t=") { token = String(trimmed.dropFirst(2)) }
            if trimmed.hasPrefix("k=") { key = String(trimmed.dropFirst(2)) }
        }
        let invalid = Verdict(valid: false, key: key, audience: nil, expiry: nil)
        guard let token, let key, let keyBytes = base64URLDecode(key),
            let publicKey = try? P256.Signing.PublicKey(x963Representation: keyBytes)
        else { return invalid }
        let parts = token.split(separator: ".")
        guard parts.count == 3, let headerJSON = base64URLDecode(parts[0]), let claimsJSON = base64URLDecode(parts[1]),
            let signatureBytes = base64URLDecode(parts[2]),
            let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signatureBytes),
            let jwtHeader = try? JSONSerialization.jsonObject(with: headerJSON) as? [String: Any],
            let claims = try? JSONSerialization.jsonObject(with: claimsJSON) as? [String: Any]
        else { return invalid }
        let signingInput = Data("\(parts[0]).\(parts[1])".utf8)
        let now = Date().timeIntervalSince1970
        let exp = (claims["exp"] as? NSNumber)?.doubleValue
        let aud = claims["aud"] as? String
        let valid = publicKey.isValidSignature(signature, for: signingInput)
            && jwtHeader["alg"] as? String == "ES256"
            && aud == audience
            && (exp ?? 0) > now && (exp ?? 0) <= now + 24 * 3600
            && (claims["sub"] as? String)?.isEmpty == false
        return Verdict(valid: valid, key: key, audience: aud, expiry: exp)
    }

    /// base64url without padding (RFC 4648 §5).
    public static func base64URLDecode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

actor StopFlag {
    private(set) var value = false
    func set() { value = true }
}

actor AudienceBox {
    private(set) var value = ""
    func set(_ value: String) { self.value = value }
}
