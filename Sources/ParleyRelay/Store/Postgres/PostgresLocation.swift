import Foundation
import NIOSSL
import PostgresNIO

/// Where the relay's PostgreSQL database is, parsed from `--database postgres://...` (or `PARLEY_DATABASE`).
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&sslmode=disable|prefer|require&host=/socket/dir]`
/// (`postgresql://` too). `host=` with a folder connects through that folder's Unix socket (as libpq does);
/// `schema=` keeps the relay's tables in that schema (created if missing; several deployments can share one
/// database), default `public`. The password may also come from `PGPASSWORD`.
public struct PostgresLocation: Sendable, Equatable {
    public enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    /// A folder holding the server's Unix socket (`.s.PGSQL.<port>`), instead of TCP.
    public var socketDirectory: String?
    public var username: String
    public var password: String?
    public var database: String
    public var schema: String
    public var tls: TLSMode

    /// Schema names the relay accepts (they become part of identifiers and notification channel names, which
    /// PostgreSQL limits to 63 bytes): 1-30 of `a-z 0-9 _`, not starting with a digit.
    static func isValidSchema(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 30, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        else { return false }
        return name.utf8.allSatisfy { ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "_") }
    }

    /// Whether `database` names a PostgreSQL URL (else it is a SQLite file path).
    public static func isURL(_ database: String) -> Bool {
        database.hasPrefix("postgres://") || database.hasPrefix("postgresql://")
    }

    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(PostgresLocationError) {
        guard Self.isURL(text), let components = URLComponents(string: text) else { throw .notAURL }
        guard let user = components.user, !user.isEmpty else { throw .missingUser }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !database.isEmpty, !database.contains("/") else { throw .missingDatabase }
        var schema = "public"
        var tls = TLSMode.prefer
        var socketDirectory: String?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "schema":
                guard let value = item.value, Self.isValidSchema(value) else { throw .badSchema }
                schema = value
            case "sslmode":
                guard let value = item.value, let mode = TLSMode(rawValue: value) else { throw .badOption(item.name) }
                tls = mode
            case "host":
                guard let value = item.value, value.hasPrefix("/") else { throw .badOption(item.name) }
                socketDirectory = value
            default:
                throw .badOption(item.name)
            }
        }
        let host = components.host ?? ""
        guard !host.isEmpty || socketDirectory != nil else { throw .missingHost }
        self.host = host.isEmpty ? "localhost" : host
        self.port = components.port ?? 5432
        self.socketDirectory = socketDirectory
        self.username = user
        self.password = components.password ?? environment["PGPASSWORD"]
        self.database = database
        self.schema = schema
        self.tls = tls
    }

    /// For logs: the server and database, never the password.
    public var redacted: String {
        "postgres://\(username)@\(socketDirectory ?? host):\(port)/\(database)" + (schema == "public" ? "" : "?schema=\(schema)")
    }

    /// Settings every relay connection starts with: every commit waits for its WAL flush (an acknowledged
    /// message is durable on the primary), the relay's schema first on the search path, and prepared statements
    /// planned once (generic plans: every statement the relay prepares looks rows up by key, and a custom plan of a
    /// statement on the partitioned `queue_entry` looks cheaper, as it prunes partitions while planning, so
    /// PostgreSQL would plan it again on every call: 1.85 ms per queue page read, measured).
    var startupParameters: [(String, String)] {
        [
            ("synchronous_commit", "on"),
            ("search_path", schema),
            ("application_name", "parley-relay"),
            ("statement_timeout", "\(PostgresStoreLimits.statementTimeoutMilliseconds)"),
            ("plan_cache_mode", "force_generic_plan"),
        ]
    }

    func clientConfiguration() throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = PostgresClient.Configuration(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password, database: database)
        } else {
            let tlsSetting: PostgresClient.Configuration.TLS =
                switch tls {
                case .disable: .disable
                case .prefer: .prefer(.makeClientConfiguration())
                case .require: .require(.makeClientConfiguration())
                }
            configuration = PostgresClient.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: tlsSetting)
        }
        configuration.options.additionalStartupParameters = startupParameters
        configuration.options.maximumConnections = PostgresStoreLimits.poolConnections
        configuration.options.minimumConnections = 2
        configuration.options.connectTimeout = .seconds(PostgresStoreLimits.connectTimeoutSeconds)
        return configuration
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            configuration = PostgresConnection.Configuration(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password, database: database)
        } else {
            let tlsSetting: PostgresConnection.Configuration.TLS =
                switch tls {
                case .disable: .disable
                case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
                case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                }
            configuration = PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: tlsSetting)
        }
        configuration.options.additionalStartupParameters = startupParameters
        configuration.options.connectTimeout = .seconds(Int64(PostgresStoreLimits.connectTimeoutSeconds))
        return configuration
    }
}

/// A `--database postgres://...` URL the relay cannot use.
public enum PostgresLocationError: Error, Equatable, CustomStringConvertible {
    case notAURL
    case missingUser
    case missingHost
    case missingDatabase
    case badSchema
    case badOption(String)

    public var description: String {
        switch self {
        case .notAURL: "not a postgres:// URL"
        case .missingUser: "the postgres:// URL needs a user (postgres://USER@HOST/DATABASE)"
        case .missingHost: "the postgres:// URL needs a host (or ?host=/socket/folder)"
        case .missingDatabase: "the postgres:// URL needs a database name (postgres://USER@HOST/DATABASE)"
        case .badSchema: "schema must be 1-30 characters of a-z, 0-9 and _, not starting with a digit"
        case .badOption(let name): "unknown or invalid URL option \(name) (known: schema, sslmode=disable|prefer|require, host=/folder)"
        }
    }
}
