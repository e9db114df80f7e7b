import Prometheus

/// The relay's Prometheus metrics, served at `/metrics`. One registry per relay instance
/// (no global metrics bootstrap, so several relays can run in one process, e.g. in tests).
final class RelayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let connections: Gauge
    let databaseUp: Gauge
    let messagesIn: Counter
    let messagesOut: Counter
    let acks: Counter
    let expired: Counter
    let refused: Counter
    let queueDepth: Gauge
    let sendLatency: DurationHistogram
    let badFrames: Counter
    let pushes: Counter
    let pushFailures: Counter
    let outboxFolds: Counter
    let outboxDrops: Counter
    let walCheckpoints: Gauge
    let walCheckpointMaxMicros: Gauge
    let walCheckpointTotalMicros: Gauge
    let walMaxFrames: Gauge

    init() {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "parley", subsystem: "relay", metricName: metric, unitName: unit, helpText: help)
        }
        connections = registry.makeGauge(descriptor: name("connections", "", "Open device WebSocket connections"))
        databaseUp = registry.makeGauge(
            descriptor: name("database_up", "", "1 while the database is reachable, 0 while the relay answers 503 for it"))
        messagesIn = registry.makeCounter(
            descriptor: name("messages_in", "total", "Queue copies stored (one per recipient device)"))
        messagesOut = registry.makeCounter(
            descriptor: name("messages_out", "total", "Envelopes written to device WebSockets"))
        acks = registry.makeCounter(descriptor: name("acks", "total", "Envelopes removed by device acks"))
        expired = registry.makeCounter(
            descriptor: name("messages_expired", "total", "Queue copies deleted undelivered by retention"))
        refused = registry.makeCounter(
            descriptor: name("sends_refused", "total", "Send requests refused (409, 410, queue full, ...)"))
        queueDepth = registry.makeGauge(descriptor: name("queue_depth", "", "Queued envelopes over all devices"))
        sendLatency = registry.makeDurationHistogram(
            descriptor: name("send", "seconds", "Time from send request to durable commit"),
            buckets: [
                .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
                .milliseconds(500), .seconds(1), .seconds(5),
            ])
        badFrames = registry.makeCounter(descriptor: name("bad_frames", "total", "Rejected WebSocket frames"))
        pushes = registry.makeCounter(descriptor: name("pushes", "total", "Web pushes accepted by push services"))
        pushFailures = registry.makeCounter(
            descriptor: name("push_failures", "total", "Web pushes given up (gone, rejected, retries exhausted)"))
        outboxFolds = registry.makeCounter(
            descriptor: name(
                "outbox_folds", "total",
                "Live envelopes dropped from a slow connection's memory, to be read from the store instead"))
        outboxDrops = registry.makeCounter(
            descriptor: name(
                "outbox_drops", "total",
                "Ephemeral frames (presence, typing, pong) dropped for a connection whose outbox is full"))
        // SQLite only (`SQLiteCheckpointer`): set when /metrics is read.
        walCheckpoints = registry.makeGauge(
            descriptor: name("wal_checkpoints", "", "SQLite write-ahead log checkpoints run on the writer between transactions"))
        walCheckpointMaxMicros = registry.makeGauge(
            descriptor: name("wal_checkpoint_max", "microseconds", "The longest SQLite write-ahead log checkpoint"))
        walCheckpointTotalMicros = registry.makeGauge(
            descriptor: name("wal_checkpoint_time", "microseconds", "All SQLite write-ahead log checkpoints together"))
        walMaxFrames = registry.makeGauge(
            descriptor: name("wal_max_frames", "", "The most frames (pages) the SQLite write-ahead log held after a commit"))
    }
}
