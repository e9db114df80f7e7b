import Foundation
import Logging
import ParleyWire
import Testing

@testable import ParleyRelay

/// The storage backends the store suite runs on. SQLite always; PostgreSQL when `PARLEY_TEST_POSTGRES` names a
/// server (scripts/test.sh starts a throwaway one and sets it), and always in CI (`CI` set), where a missing
/// server fails the PostgreSQL cases instead of skipping them.
enum TestBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// `postgres://...` of the test server (each test gets a schema of its own in it).
    static let postgresURL = ProcessInfo.processInfo.environment["PARLEY_TEST_POSTGRES"]

    static var available: [TestBackend] {
        if postgresURL != nil || ProcessInfo.processInfo.environment["CI"] != nil { return [.sqlite, .postgres] }
        return [.sqlite]
    }

    /// A new, empty database for one test: a SQLite file, or a fresh schema on the test server.
    func freshDatabase() throws -> String {
        switch self {
        case .sqlite:
            return FileManager.default.temporaryDirectory
                .appendingPathComponent("parley-store-test-\(UUID().uuidString).sqlite").path
        case .postgres:
            return try Self.freshPostgresDatabase()
        }
    }

    static func freshPostgresDatabase(prefix: String = "t") throws -> String {
        guard let url = postgresURL else {
            throw TestFailure("PARLEY_TEST_POSTGRES is not set: run the tests through scripts/test.sh, which starts a server")
        }
        let schema = "\(prefix)_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        return url + (url.contains("?") ? "&" : "?") + "schema=\(schema)"
    }

    /// Opens a store on `database` (migrated). PostgreSQL stores get a cluster membership too (their node row),
    /// as a relay node would.
    static func openStore(_ database: String) async throws -> any RelayStore {
        var logger = Logger(label: "parley-store-test")
        logger.logLevel = .warning
        let configuration = RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: database)
        return try await RelayBackend.open(configuration, logger: logger).0
    }

    /// Closes `store` once the test's body is done (`defer` cannot await `RelayStore.close()`, which is async).
    static func closeLater(_ store: any RelayStore) {
        Task { try? await store.close() }
    }

    func makeStore() async throws -> any RelayStore {
        try await Self.openStore(try freshDatabase())
    }

    /// Two stores on one fresh database: on PostgreSQL two relay nodes (each its own pool and node row); on SQLite
    /// the one store twice (one process owns the file).
    func makeStorePair() async throws -> StorePair {
        let database = try freshDatabase()
        let first = try await Self.openStore(database)
        let second = self == .postgres ? try await Self.openStore(database) : first
        return StorePair(first: first, second: second, distinct: self == .postgres)
    }

    struct StorePair: Sendable {
        let first: any RelayStore
        let second: any RelayStore
        let distinct: Bool

        /// `TestBackend.closeLater` for each store.
        func closeLater() {
            TestBackend.closeLater(first)
            if distinct { TestBackend.closeLater(second) }
        }
    }
}

/// The EC-only prekey calls of the store tests written before Kyber prekeys: no Kyber keys, the one-time EC count.
extension RelayStore {
    func storePreKeys(_ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey]) async throws -> Int {
        try await storePreKeys(
            address, identityKey: identityKey, signed: signed, oneTime: oneTime, kyberLastResort: nil, kyberOneTime: [], kyberSignedBy: nil
        ).oneTime
    }

    func oneTimePreKeyCount(_ address: DeviceAddress) async throws -> Int {
        try await preKeyCounts(address).oneTime
    }
}
