import Foundation
import Testing
import Logging
import ParleyWire
@testable import ParleyRelay

/// A real relay on an ephemeral loopback port with a temporary SQLite file.
struct TestRelay {
    let running: RunningRelay
    let databasePath: String
    let limits: RelayLimits

    var port: Int { running.port }
    var http: HTTPTestClient { HTTPTestClient(port: running.port) }

    static func start(
        limits: RelayLimits = RelayLimits(), databasePath: String? = nil, gracefulShutdownSeconds: Int64 = 3
    ) async throws -> TestRelay {
        let path = databasePath ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-relay-test-\(UUID().uuidString).sqlite").path
        let level = ProcessInfo.processInfo.environment["PARLEY_RELAY_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) }
        var limits = limits
        limits.gracefulShutdownSeconds = gracefulShutdownSeconds
        let configuration = RelayConfiguration(
            host: "127.0.0.1", port: 0, databasePath: path, limits: limits, logLevel: level ?? .warning,
            metrics: .init(host: "127.0.0.1", port: 0))
        let running = try await RelayServer.start(configuration)
        return TestRelay(running: running, databasePath: path, limits: limits)
    }

    /// Graceful stop, bounded: a shutdown that does not finish within `limit` fails the test instead of hanging it.
    func stop(limit: Duration = .seconds(15)) async throws {
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

/// Random key material for a device (the relay never interprets it).
enum Fixtures {
    static func bytes(_ count: Int) -> Data {
        Data((0..<count).map { _ in UInt8.random(in: .min ... .max) })
    }

    static func keys(registrationId: UInt32 = UInt32.random(in: 1...16380), oneTimeCount: Int = 5, firstKeyId: UInt32 = 1)
        -> NewDeviceKeys
    {
        NewDeviceKeys(
            registrationId: registrationId, identityKey: bytes(33),
            signedPreKey: SignedPreKey(keyId: 1, publicKey: bytes(33), signature: bytes(64)),
            oneTimePreKeys: (0..<oneTimeCount).map { OneTimePreKey(keyId: firstKeyId + UInt32($0), publicKey: bytes(33)) })
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
