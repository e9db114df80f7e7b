import Foundation
import Logging

/// Chooses the storage backend from `RelayConfiguration.databasePath`: a `postgres://` URL selects PostgreSQL
/// (several nodes may share it: the cluster coordinates them), anything else is a SQLite file (this node is the
/// whole deployment).
enum RelayBackend {
    static func open(_ configuration: RelayConfiguration, logger: Logger) async throws -> (any RelayStore, any RelayCluster) {
        let database = configuration.databasePath
        guard PostgresLocation.isURL(database) else {
            return (try SQLiteRelayStore(path: database), SingleNode())
        }
        let location = try PostgresLocation(url: database)
        let store = try await PostgresRelayStore.open(location, logger: logger)
        let cluster = PostgresCluster(store: store)
        do {
            try await cluster.join(description: "\(configuration.host):\(configuration.port) pid \(ProcessInfo.processInfo.processIdentifier)")
        } catch {
            try? await store.close()
            throw error
        }
        logger.info("database: PostgreSQL", metadata: ["server": "\(location.redacted)"])
        return (store, cluster)
    }

    /// What the logs call the database: a SQLite file's name, or a PostgreSQL server and database (no password).
    static func describe(_ database: String) -> String {
        if PostgresLocation.isURL(database) {
            return (try? PostgresLocation(url: database).redacted) ?? "postgres (invalid URL)"
        }
        return URL(fileURLWithPath: database).lastPathComponent
    }
}
