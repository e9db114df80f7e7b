import NIOCore
import PostgresNIO

/// The text of a statement that each pooled connection prepares once (`PostgresRelayStore.rows(_:_:_:)`): the
/// statements every send, ack and delivery batch runs. Parameters are `$1`, `$2`, ... in the order of the bindings.
protocol PreparedSQL {
    /// The statement's name on the connection (unique among the prepared statements; at most 63 bytes).
    static var name: String { get }
    static var sql: String { get }
}

/// A `PreparedSQL` as postgres-nio runs it: parsed and planned by PostgreSQL on a connection's first use, then only
/// bound and executed (the relay's connections start with `plan_cache_mode = force_generic_plan`,
/// `PostgresLocation.startupParameters`: one generic plan, no planning per call). Planning a join over
/// the hash-partitioned queue tables costs more than running it: measured with `pg_stat_statements`, the remote
/// entries read spent 2.2 ms planning and 0.8 ms running per call (BENCHMARKS.md, "Scale-out").
struct PreparedQuery<SQL: PreparedSQL>: PostgresPreparedStatement {
    typealias Row = PostgresRow
    static var name: String { SQL.name }
    static var sql: String { SQL.sql }
    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

extension PostgresRelayStore {
    /// Runs the prepared statement `SQL` with `bindings` and collects its rows; like `rows(_:_:)`, fails as soon as
    /// the connection has closed.
    @discardableResult
    func rows<SQL: PreparedSQL>(_ connection: PostgresConnection, _ sql: SQL.Type, _ bindings: PostgresBindings) async throws
        -> [PostgresRow]
    {
        let promise = connection.eventLoop.makePromise(of: [PostgresRow].self)
        let logger = self.logger
        promise.completeWithTask {
            var rows: [PostgresRow] = []
            for try await row in try await connection.execute(PreparedQuery<SQL>(bindings: bindings), logger: logger) {
                rows.append(row)
            }
            return rows
        }
        return try await closeWatch.guarded(connection, promise.futureResult)
    }
}
