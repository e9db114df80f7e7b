import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import Testing
@testable import ParleyRelay

/// A real local HTTP push service: verifies the VAPID JWT (ES256 signature, audience, expiry) of every
/// push and answers with scripted status codes.
final class PushReceiver: Sendable {
    struct Push: Sendable {
        let path: String
        let vapidValid: Bool
        let publicKey: String?
        let bodyBytes: Int
        let ttl: String?
        let method: String
        let host: String?
    }

    actor Log {
        private(set) var pushes: [Push] = []
        private var scripts: [String: [Int]] = [:]
        private(set) var redirects: [String: String] = [:]

        func record(_ push: Push) -> Int {
            pushes.append(push)
            guard var script = scripts[push.path], !script.isEmpty else { return 201 }
            let status = script.removeFirst()
            scripts[push.path] = script
            return status
        }

        /// Answers pushes to `path` with `302 Found` to `location`.
        func redirect(_ path: String, to location: String) {
            redirects[path] = location
        }

        func script(_ path: String, _ statuses: [Int]) {
            scripts[path] = statuses
        }

        func pushes(to path: String) -> [Push] {
            pushes.filter { $0.path == path }
        }
    }

    let port: Int
    let log: Log
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, log: Log, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.log = log
        self.group = group
        self.task = task
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    static func start() async throws -> PushReceiver {
        let log = Log()
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let (audienceStream, audienceContinuation) = AsyncStream<String>.makeStream()
        let audienceBox = AudienceBox()
        let router = Router()
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let audience = await audienceBox.value
            let authorization = request.headers[.authorization]
            let (valid, key) = verify(authorization, audience: audience)
            let push = Push(
                path: request.uri.path, vapidValid: valid, publicKey: key, bodyBytes: body.readableBytes,
                ttl: HTTPField.Name("TTL").flatMap { request.headers[$0] }, method: "\(request.method)",
                host: request.head.authority ?? HTTPField.Name("Host").flatMap { request.headers[$0] })
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
        guard let port = await iterator.next() else { throw TestFailure("push receiver did not start") }
        var audienceIterator = audienceStream.makeAsyncIterator()
        if let audience = await audienceIterator.next() { await audienceBox.set(audience) }
        return PushReceiver(port: port, log: log, group: group, task: task)
    }

    func stop() async throws {
        let (group, task) = (self.group, self.task)
        let finished = await bounded(.seconds(10)) {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }
        if !finished { Issue.record("push receiver did not stop within 10 s") }
    }

    /// RFC 8292 check: `vapid t=<JWT>, k=<key>`; ES256 signature by k; aud = our origin; exp within 24 h.
    static func verify(_ header: String?, audience: String) -> (Bool, String?) {
        guard let header, header.hasPrefix("vapid ") else { return (false, nil) }
        var token: String?
        var key: String?
        for part in header.dropFirst(6).split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("t=") { token = String(trimmed.dropFirst(2)) }
            if trimmed.hasPrefix("k=") { key = String(trimmed.dropFirst(2)) }
        }
        guard let token, let key, let keyBytes = Base64URL.decode(key),
            let publicKey = try? P256.Signing.PublicKey(x963Representation: keyBytes)
        else { return (false, key) }
        let parts = token.split(separator: ".")
        guard parts.count == 3, let headerJSON = Base64URL.decode(parts[0]), let claimsJSON = Base64URL.decode(parts[1]),
            let signatureBytes = Base64URL.decode(parts[2]),
            let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signatureBytes),
            let jwtHeader = try? JSONSerialization.jsonObject(with: headerJSON) as? [String: Any],
            let claims = try? JSONSerialization.jsonObject(with: claimsJSON) as? [String: Any]
        else { return (false, key) }
        let signingInput = Data("\(parts[0]).\(parts[1])".utf8)
        let now = Date().timeIntervalSince1970
        let exp = (claims["exp"] as? NSNumber)?.doubleValue ?? 0
        let valid = publicKey.isValidSignature(signature, for: signingInput)
            && jwtHeader["alg"] as? String == "ES256"
            && claims["aud"] as? String == audience
            && exp > now && exp <= now + 24 * 3600
            && (claims["sub"] as? String)?.isEmpty == false
        return (valid, key)
    }
}

actor AudienceBox {
    private(set) var value = ""
    func set(_ value: String) { self.value = value }
}
