import ArgumentParser
import Foundation
import Logging
import ParleyRelay

/// `parley-relay`: the Parley message relay. Wiring only; see Specs/relay-protocol.md.
@main
struct ParleyRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-relay", abstract: "Parley end-to-end encrypted message relay (HTTP + WebSocket).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "TCP port (0 = ephemeral).") var port = 8080
    @Option(
        help: """
            SQLite database file (created on first start), or postgres://USER@HOST:PORT/DATABASE for PostgreSQL \
            (several relays may share one; options ?schema=NAME&sslmode=disable|prefer|require). \
            Default: $PARLEY_DATABASE, else ./parley-relay.sqlite.
            """) var database: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).") var logLevel = "info"
    @Option(help: "Max devices per account.") var maxDevices = RelayLimits().maxDevicesPerAccount
    @Option(help: "Max queued messages per device.") var maxQueuedMessages = RelayLimits().maxQueuedMessagesPerDevice
    @Option(help: "Max queued ciphertext bytes per device.") var maxQueuedBytes = RelayLimits().maxQueuedBytesPerDevice
    @Option(help: "Retention of undelivered messages, in days.") var retentionDays = 30
    @Option(help: "Max members per group.") var maxGroupMembers = RelayLimits().maxGroupMembers
    @Option(help: "Max bytes of one link's history archive (a new device's history).") var maxLinkHistoryBytes =
        RelayLimits().maxLinkHistoryBytes
    @Option(help: "Prekey bundles (one per device returned): burst per requesting device.") var bundleFetchBurst =
        RelayLimits().bundleFetchBurst
    @Option(help: "Prekey bundles: refill per second per requesting device.") var bundleFetchRate = RelayLimits().bundleFetchPerSecond
    @Option(help: "One-time prekeys a device hands out: burst.") var prekeyHandoutBurst = RelayLimits().oneTimePreKeyHandoutBurst
    @Option(help: "One-time prekeys a device hands out: refill per hour.") var prekeyHandoutsPerHour =
        RelayLimits().oneTimePreKeyHandoutsPerHour
    @Option(help: "Queued messages of one sender account per device.") var maxQueuedMessagesPerSender =
        RelayLimits().maxQueuedMessagesPerSender
    @Option(help: "Queued ciphertext bytes of one sender account per device.") var maxQueuedBytesPerSender =
        RelayLimits().maxQueuedBytesPerSender
    @Option(help: "Web pushes per second per push-service origin (burst: 10x).") var pushesPerSecondPerOrigin =
        RelayLimits().pushesPerSecondPerOrigin
    @Option(help: "HTTP requests per second per peer address (burst: 2x).") var requestsPerSecondPerAddress =
        RelayLimits().requestsPerSecondPerAddress
    @Option(help: "Registrations + link claims per minute per peer address (burst: 20).") var creationsPerMinutePerAddress =
        RelayLimits().creationsPerSecondPerAddress * 60
    @Option(help: "WebSocket frames per second per connection a device may send (burst: 5x).") var clientFramesPerSecond =
        RelayLimits().clientFramesPerSecond
    @Option(help: "VAPID subject (mailto: or https: contact) sent to push services.") var vapidSubject =
        "mailto:admin@localhost"
    @Flag(help: "Accept http:// push endpoints and non-public addresses (tests, local development only).")
    var allowInsecurePush = false
    @Option(help: "TLS certificate chain (PEM): serve https:// and wss:// (needs --tls-key).") var tlsCert: String?
    @Option(help: "TLS private key (PEM) for --tls-cert.") var tlsKey: String?
    @Option(help: "Serve /metrics (Prometheus, unauthenticated) on this port of --metrics-host; off if not given.")
    var metricsPort: Int?
    @Option(help: "Address of the metrics listener (keep it loopback or private).") var metricsHost = "127.0.0.1"
    @Option(help: "Max TCP connections per peer address (IPv4 address or IPv6 /64).") var maxConnectionsPerAddress =
        RelayLimits().maxConnectionsPerAddress
    @Option(help: "Max TCP connections in all (default: the open-file limit minus a reserve).") var maxConnections: Int?

    mutating func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level \(logLevel)")
        }
        guard maxDevices >= 1, maxQueuedMessages >= 1, maxQueuedBytes >= 1, retentionDays >= 1, maxGroupMembers >= 2,
            bundleFetchBurst >= 1, bundleFetchRate > 0, requestsPerSecondPerAddress >= 1, creationsPerMinutePerAddress > 0,
            clientFramesPerSecond > 0, maxConnectionsPerAddress >= 1, (maxConnections ?? 1) >= 1,
            prekeyHandoutBurst >= 1, prekeyHandoutsPerHour > 0, maxQueuedMessagesPerSender >= 1,
            maxQueuedBytesPerSender >= 1, pushesPerSecondPerOrigin > 0, maxLinkHistoryBytes >= 1
        else { throw ValidationError("limits must be positive (max-group-members at least 2)") }
        var limits = RelayLimits()
        limits.maxDevicesPerAccount = maxDevices
        limits.maxQueuedMessagesPerDevice = maxQueuedMessages
        limits.maxQueuedBytesPerDevice = maxQueuedBytes
        limits.retentionSeconds = Int64(retentionDays) * 24 * 3600
        limits.maxGroupMembers = maxGroupMembers
        limits.maxLinkHistoryBytes = maxLinkHistoryBytes
        // The account's bound on archives at once stays twice one archive.
        limits.maxLinkHistoryBytesPerAccount = 2 * maxLinkHistoryBytes
        limits.bundleFetchBurst = bundleFetchBurst
        limits.bundleFetchPerSecond = bundleFetchRate
        limits.oneTimePreKeyHandoutBurst = prekeyHandoutBurst
        limits.oneTimePreKeyHandoutsPerHour = prekeyHandoutsPerHour
        limits.maxQueuedMessagesPerSender = maxQueuedMessagesPerSender
        limits.maxQueuedBytesPerSender = maxQueuedBytesPerSender
        limits.pushesPerSecondPerOrigin = pushesPerSecondPerOrigin
        limits.pushBurstPerOrigin = max(1, Int(pushesPerSecondPerOrigin * 10))
        limits.allowInsecurePushEndpoints = allowInsecurePush
        limits.requestsPerSecondPerAddress = requestsPerSecondPerAddress
        limits.requestBurstPerAddress = Int(requestsPerSecondPerAddress * 2)
        limits.creationsPerSecondPerAddress = creationsPerMinutePerAddress / 60
        limits.clientFramesPerSecond = clientFramesPerSecond
        limits.maxConnectionsPerAddress = maxConnectionsPerAddress
        limits.maxConnections = maxConnections
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        let tls = tlsCert.flatMap { cert in tlsKey.map { RelayConfiguration.TLSFiles(certificateChainPath: cert, privateKeyPath: $0) } }
        let metrics = metricsPort.map { RelayConfiguration.MetricsListener(host: metricsHost, port: $0) }
        let database = self.database ?? ProcessInfo.processInfo.environment["PARLEY_DATABASE"] ?? "./parley-relay.sqlite"
        if PostgresLocation.isURL(database) {
            do {
                _ = try PostgresLocation(url: database)
            } catch {
                throw ValidationError("--database: \(error)")
            }
        }
        let configuration = RelayConfiguration(
            host: host, port: port, databasePath: database, limits: limits, logLevel: level, vapidSubject: vapidSubject, tls: tls,
            metrics: metrics)
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        try await RelayServer.run(configuration)
    }
}
