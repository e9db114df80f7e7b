import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL
import ParleyWire
import Testing
@testable import ParleyRelay

/// `--tls-cert`/`--tls-key`: the relay serves https:// and wss:// (self-signed test certificate).
@Suite("TLS", .timeLimit(.minutes(3)))
struct TLSTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tls")
    static let files = RelayConfiguration.TLSFiles(
        certificateChainPath: fixtures.appendingPathComponent("test-cert.pem").path,
        privateKeyPath: fixtures.appendingPathComponent("test-key.pem").path)

    static func clientTLS() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(files.certificateChainPath))
        return tls
    }

    @Test func httpsAndWssWithTheGivenCertificate() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tls-\(UUID().uuidString).sqlite").path
        let running = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: database, logLevel: .warning, tls: Self.files))
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = try Self.clientTLS()
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        // An HTTPClient dropped without shutdown() is a fatal error that ends the whole test process:
        // shut it down (and stop the relay) whether the checks below pass or throw.
        do {
            try await checkHTTPSAndWSS(http: http, port: running.port)
        } catch {
            try? await http.shutdown()
            try? await running.stop()
            throw error
        }
        try await http.shutdown()
        try await running.stop()
    }

    private func checkHTTPSAndWSS(http: HTTPClient, port: Int) async throws {
        let health = try await http.execute(HTTPClientRequest(url: "https://localhost:\(port)/healthz"), timeout: .seconds(30))
        #expect(health.status == .ok)

        var register = HTTPClientRequest(url: "https://localhost:\(port)/v1/accounts")
        register.method = .POST
        register.headers.add(name: "Content-Type", value: "application/json")
        register.body = .bytes(ByteBuffer(bytes: try WireCoding.encoder().encode(
            RegisterAccountRequest(name: Fixtures.uniqueName("tls"), device: Fixtures.keys()))))
        let registered = try await http.execute(register, timeout: .seconds(30))
        #expect(registered.status == .created)
        let credentials = try WireCoding.decoder().decode(
            DeviceCredentials.self, from: Data((try await registered.body.collect(upTo: 1 << 20)).readableBytesView))

        // wss:// with the device's credentials: the first frame is the (empty) backlog marker.
        var headers = HTTPFields()
        headers[.authorization] = credentials.authorizationHeader
        let firstFrame = LockedBox<String?>(nil)
        _ = try await WebSocketClient.connect(
            url: "wss://localhost:\(port)/v1/ws", configuration: .init(additionalHeaders: headers),
            tlsConfiguration: try Self.clientTLS(), logger: Logger(label: "tls-test")
        ) { inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                if case .text(let text) = message { firstFrame.set(text) }
                break
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        #expect(firstFrame.get()?.contains("queueEmpty") == true)

        // Plain http:// to the TLS port gets no answer.
        let plain = try? await http.execute(HTTPClientRequest(url: "http://localhost:\(port)/healthz"), timeout: .seconds(5))
        #expect(plain?.status != .ok)
    }

    @Test func anUnreadableCertificateStopsTheStart() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tls-\(UUID().uuidString).sqlite").path
        let missing = RelayConfiguration.TLSFiles(certificateChainPath: "/nonexistent/cert.pem", privateKeyPath: Self.files.privateKeyPath)
        await #expect(throws: RelayStartError.self) {
            _ = try await RelayServer.start(RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: database, tls: missing))
        }
    }
}

/// A value shared with a Sendable closure.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ newValue: T) { lock.lock(); value = newValue; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}
