/// The PostgreSQL backend's limits and timings, in one place.
enum PostgresStoreLimits {
    /// Connections in one node's pool: the two group committers (sends, acks), the touch and connection batchers,
    /// backlog reads of many sessions at once, and the HTTP routes. PostgreSQL's own `max_connections` (default 100)
    /// must cover every node's pool plus one listener connection per node.
    static let poolConnections = 24
    /// A store call that gets no pool connection within this time answers 503 (the pool itself waits a minute
    /// before failing requests while PostgreSQL is down). Generous: under load a healthy pool hands one out in
    /// microseconds to milliseconds.
    static let leaseTimeoutMilliseconds: Int64 = 5_000
    /// A connection attempt that takes longer fails (the node then answers 503 until PostgreSQL is back).
    static let connectTimeoutSeconds = 5
    /// No statement runs longer (lock waits included): a stuck statement fails instead of holding a group commit.
    static let statementTimeoutMilliseconds = 30_000
    /// A transaction that PostgreSQL aborted to break a deadlock or a serialization conflict is run again this many
    /// times before the error goes to the caller.
    static let transactionRetries = 3
    /// How often a node renews its lease (`relay_node.lease_until`).
    static let heartbeatMilliseconds: Int64 = 2_000
    /// Heartbeats that fail in a row, while the listener connection is up, before the node starts over with a fresh
    /// pool and listener (about 6 s of a pool that cannot reach a database the listener reaches).
    static let failedBeatsBeforeReconnect = 3
    /// How long a lease lasts: a node that has not renewed it for this long is dead for the others (its devices go
    /// offline, its connection rows are removed). Five missed heartbeats.
    static let leaseMilliseconds: Int64 = 10_000
    /// After losing the database, the listener tries to reconnect after this long, doubling up to the maximum.
    static let reconnectInitialMilliseconds: Int64 = 200
    static let reconnectMaximumMilliseconds: Int64 = 2_000
    /// Bytes of one NOTIFY payload (PostgreSQL's limit is 8,000).
    static let maxNotifyPayloadBytes = 7_900
    /// Entries of other nodes' notifications read from the tables in one query.
    static let remoteReadBatch = 2_000
}
