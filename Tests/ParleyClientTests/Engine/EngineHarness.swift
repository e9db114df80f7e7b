import Foundation
import Logging
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A real relay on loopback and devices that talk through it.
final class EngineHarness: @unchecked Sendable {
    let dir: URL
    private(set) var relay: RunningRelay
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }
    var databasePath: String { dir.appendingPathComponent("relay.sqlite").path }

    static func limits() -> RelayLimits {
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 100_000
        limits.creationsPerSecondPerAddress = 10_000
        limits.bundleFetchBurst = 100_000
        limits.bundleFetchPerSecond = 10_000
        limits.clientFramesPerSecond = 10_000
        limits.presenceCoalesceMilliseconds = 50
        return limits
    }

    /// The relay's log level: `PARLEY_RELAY_TEST_LOG` (e.g. `debug`), else errors only.
    static var logLevel: Logger.Level {
        ProcessInfo.processInfo.environment["PARLEY_RELAY_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .error
    }

    /// The relay's limits (default: `limits()`; tests of behaviour under load pass `RelayLimits()`).
    let limits: RelayLimits

    init(limits: RelayLimits = EngineHarness.limits()) async throws {
        self.limits = limits
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        relay = try await RelayServer.start(
            RelayConfiguration(
                host: "127.0.0.1", port: 0, databasePath: dir.appendingPathComponent("relay.sqlite").path,
                limits: limits, logLevel: Self.logLevel))
        port = relay.port
    }

    /// Stops the relay and starts it again on the same port and database.
    func restartRelay() async throws {
        try await relay.stop()
        relay = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: port, databasePath: databasePath, limits: limits, logLevel: Self.logLevel))
    }

    func stopRelay() async throws { try await relay.stop() }

    func startRelay() async throws {
        relay = try await RelayServer.start(
            RelayConfiguration(host: "127.0.0.1", port: port, databasePath: databasePath, limits: limits, logLevel: Self.logLevel))
    }

    func register(_ prefix: String) async throws -> ParleyDevice {
        let name = "\(prefix)-\(UUID().uuidString.prefix(6).lowercased())"
        return try await ParleyDevice.register(
            name: name, serverURL: baseURL, storePath: dir.appendingPathComponent("\(name).sqlite").path)
    }

    func finish() async {
        try? await relay.stop()
        try? FileManager.default.removeItem(at: dir)
    }
}

/// Waits until `device`'s outbox is empty; false if it still holds entries after `timeout`.
/// (An entry is removed only once the relay's answer is read, which may come after its
/// recipient already saw the message.)
func outboxDrains(_ device: ParleyDevice, timeout: Duration = .seconds(30)) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? device.store.outboxCount()) == 0 { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return (try? device.store.outboxCount()) == 0
}

/// Records a device's events and waits for the ones a test expects.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ClientEvent] = []
    private var task: Task<Void, Never>?

    init(_ device: ParleyDevice) async {
        let stream = await device.events()
        task = Task { [weak self] in
            for await event in stream { self?.append(event) }
        }
    }

    private func append(_ event: ClientEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    var all: [ClientEvent] {
        lock.lock()
        defer { lock.unlock() }
        return events
    }

    /// Waits until an event matches; fails the test after `timeout`.
    @discardableResult
    func wait(
        for description: String, timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
        _ match: @escaping @Sendable (ClientEvent) -> Bool
    ) async -> ClientEvent? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = all.first(where: match) { return event }
            try? await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(description)", sourceLocation: sourceLocation)
        return nil
    }

    func count(_ match: (ClientEvent) -> Bool) -> Int { all.filter(match).count }

    deinit { task?.cancel() }
}

extension ClientEvent {
    var messageBody: String? {
        if case .message(let message) = self { return message.body }
        return nil
    }
}
