import Foundation
import Testing
import Logging
import ParleyCrypto
import ParleyProtocol
import ParleyWire
@testable import ParleyRelay

/// A real relay on an ephemeral loopback port with a temporary SQLite file (or PostgreSQL schema: `defaultDatabase`).
struct TestRelay {
    let running: RunningRelay
    let databasePath: String
    let limits: RelayLimits

    var port: Int { running.port }
    var http: HTTPTestClient { HTTPTestClient(port: running.port) }

    static func start(
        limits: RelayLimits = RelayLimits(), databasePath: String? = nil, gracefulShutdownSeconds: Int64 = 3,
        pushResolver: (any PushAddressResolver)? = nil
    ) async throws -> TestRelay {
        let path = try databasePath ?? defaultDatabase()
        let level = ProcessInfo.processInfo.environment["PARLEY_RELAY_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) }
        var limits = limits
        limits.gracefulShutdownSeconds = gracefulShutdownSeconds
        var configuration = RelayConfiguration(
            host: "127.0.0.1", port: 0, databasePath: path, limits: limits, logLevel: level ?? .warning,
            metrics: .init(host: "127.0.0.1", port: 0))
        configuration.pushAddressResolver = pushResolver
        let running = try await RelayServer.start(configuration)
        return TestRelay(running: running, databasePath: path, limits: limits)
    }

    /// A temporary SQLite file; with `PARLEY_TEST_RELAY_BACKEND=postgres` (and `PARLEY_TEST_POSTGRES`), a fresh
    /// schema on the test PostgreSQL server instead, so that the relay suites can run on either backend.
    static func defaultDatabase() throws -> String {
        if ProcessInfo.processInfo.environment["PARLEY_TEST_RELAY_BACKEND"] == "postgres" {
            return try TestBackend.freshPostgresDatabase(prefix: "r")
        }
        return sqlitePath()
    }

    /// A new temporary SQLite file (tests that read the relay's SQLite files pass it explicitly).
    static func sqlitePath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("parley-relay-test-\(UUID().uuidString).sqlite").path
    }

    /// Graceful stop, bounded: a shutdown that does not finish within `limit` fails the test instead of hanging it.
    /// The default bound is far above a normal stop (under a second) so that a loaded machine does not fail it.
    func stop(limit: Duration = .seconds(60)) async throws {
        let running = self.running
        let finished = await bounded(limit) { try? await running.stop() }
        if !finished { Issue.record("relay did not stop within \(limit)") }
    }

    /// Stops, then starts a new relay on the same database file.
    func restarted() async throws -> TestRelay {
        try await stop()
        return try await TestRelay.start(
            limits: limits, databasePath: databasePath, gracefulShutdownSeconds: limits.gracefulShutdownSeconds)
    }

    func connect(_ credentials: DeviceCredentials) async throws -> WSTestClient {
        try await WSTestClient.connect(port: port, credentials: credentials)
    }

    /// Makes two accounts contacts (a 1:1 message each way, so the relay shows them each other's presence and
    /// typing), then empties both queues again (each device reads and acks its backlog).
    func makeContacts(_ a: DeviceCredentials, _ b: DeviceCredentials) async throws {
        for (from, to) in [(a, b), (b, a)] {
            let reply = try await http.sendToAll(from: from, to: to.account)
            guard reply.status == 200 else { throw TestFailure("contact message \(from.account) -> \(to.account): \(reply.status)") }
        }
        for device in [a, b] {
            let ws = try await connect(device)
            let backlog = try await ws.backlog()
            if !backlog.isEmpty { try ws.ack(backlog.map(\.id)) }
            await ws.close()
        }
        // The acks are applied asynchronously: wait until both queues are empty.
        for device in [a, b] {
            let emptied = await eventually(timeout: .seconds(15)) {
                guard let ws = try? await connect(device), let backlog = try? await ws.backlog() else { return false }
                await ws.close()
                return backlog.isEmpty
            }
            guard emptied else { throw TestFailure("queue of \(device.account) not emptied") }
        }
    }

    /// The Prometheus text of the relay's metrics listener (loopback, its own port).
    func metricsText() async throws -> String {
        guard let metricsPort = running.metricsPort else { throw TestFailure("the relay serves no metrics") }
        return String(decoding: try await HTTPTestClient(port: metricsPort).raw(.GET, "/metrics").body, as: UTF8.self)
    }

    /// One sample of the relay's metrics (`name` or `name{labels}` exactly as printed), 0 when absent.
    func metric(_ name: String) async throws -> Double {
        PrometheusText.value(of: name, in: try await metricsText())
    }
}

/// Reading samples out of Prometheus text format.
enum PrometheusText {
    static func value(of name: String, in text: String) -> Double {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), line[..<space] == name else { continue }
            return Double(line[line.index(after: space)...]) ?? 0
        }
        return 0
    }
}

/// Key material for test devices: real Curve25519 keys in libsignal's serialization and a signed prekey
/// signed (XEdDSA) by the identity key, as the relay checks them.
enum Fixtures {
    static func bytes(_ count: Int) -> Data {
        Data((0..<count).map { _ in UInt8.random(in: .min ... .max) })
    }

    /// A fresh identity key pair.
    static func identity() -> IdentityKeyPair {
        do {
            return try IdentityKeyPair.generate()
        } catch {
            fatalError("key generation failed: \(error)")
        }
    }

    /// A well-formed public key (`0x05` and 32 random bytes): one-time prekeys, whose curve points the relay
    /// does not interpret.
    static func publicKey() -> Data {
        Data([0x05]) + bytes(32)
    }

    /// A signed prekey signed by `identity`.
    static func signedPreKey(id: UInt32 = 1, identity: IdentityKeyPair) -> SignedPreKey {
        let publicKey = publicKey()
        do {
            let signature = try XEdDSA.sign(Array(publicKey), with: identity.privateKey, using: SystemRandom.shared)
            return SignedPreKey(keyId: id, publicKey: publicKey, signature: Data(signature))
        } catch {
            fatalError("signing failed: \(error)")
        }
    }

    static func oneTimePreKeys(_ count: Int, firstKeyId: UInt32 = 1) -> [OneTimePreKey] {
        (0..<count).map { OneTimePreKey(keyId: firstKeyId + UInt32($0), publicKey: publicKey()) }
    }

    static func keys(
        registrationId: UInt32 = UInt32.random(in: 1...16380), oneTimeCount: Int = 5, firstKeyId: UInt32 = 1,
        identity: IdentityKeyPair = Fixtures.identity()
    ) -> NewDeviceKeys {
        NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(identity.identityKey.serialized),
            signedPreKey: signedPreKey(identity: identity),
            oneTimePreKeys: oneTimePreKeys(oneTimeCount, firstKeyId: firstKeyId))
    }

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// Polls `condition` until it holds or `timeout` passes (for effects that happen after a delay).
func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(25))
    }
    return try await condition()
}

/// Runs `work` in a task; returns false if it did not finish within `timeout` (the task is then cancelled).
func bounded(_ timeout: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
    let done = ResultBox()
    let task = Task {
        await work()
        await done.set(.success(()))
    }
    let finished = await eventually(timeout: timeout) { await done.result != nil }
    if !finished { task.cancel() }
    return finished
}
