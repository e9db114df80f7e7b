import Logging

/// Everything needed to start a relay.
public struct RelayConfiguration: Sendable {
    public var host: String
    /// 0 = pick an ephemeral port (see `RunningRelay.port`).
    public var port: Int
    /// SQLite database file, created on first start; or a PostgreSQL URL (`postgres://user@host:port/db`, see
    /// `PostgresLocation`), whose schema the relay creates and migrates, and which several relays may share.
    public var databasePath: String
    public var limits: RelayLimits
    public var logLevel: Logger.Level
    /// VAPID `sub` claim (RFC 8292): a `mailto:` or `https:` contact for push services.
    public var vapidSubject: String
    /// Serve https:// and wss:// with this certificate chain and key (PEM files); nil: plain
    /// http:// and ws:// (behind a TLS-terminating proxy, or on loopback).
    public var tls: TLSFiles?
    /// Serve `/metrics` on this separate listener; nil: not at all. Never on the public port: bind it to loopback
    /// (the default host) or a private interface, for the Prometheus scraper.
    public var metrics: MetricsListener?

    /// Where `/metrics` is served.
    public struct MetricsListener: Sendable, Equatable {
        public var host: String
        /// 0 = pick an ephemeral port (see `RunningRelay.metricsPort`).
        public var port: Int

        public init(host: String = "127.0.0.1", port: Int) {
            self.host = host
            self.port = port
        }
    }
    /// Resolves push endpoint hosts (nil: the system resolver). Tests substitute one.
    var pushAddressResolver: (any PushAddressResolver)?

    /// PEM files of the relay's TLS certificate chain and private key.
    public struct TLSFiles: Sendable, Equatable {
        public var certificateChainPath: String
        public var privateKeyPath: String

        public init(certificateChainPath: String, privateKeyPath: String) {
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
        }
    }

    public init(
        host: String = "127.0.0.1", port: Int = 8080, databasePath: String = "./parley-relay.sqlite",
        limits: RelayLimits = RelayLimits(), logLevel: Logger.Level = .info,
        vapidSubject: String = "mailto:admin@localhost", tls: TLSFiles? = nil, metrics: MetricsListener? = nil
    ) {
        self.vapidSubject = vapidSubject
        self.tls = tls
        self.metrics = metrics
        self.host = host
        self.port = port
        self.databasePath = databasePath
        self.limits = limits
        self.logLevel = logLevel
    }
}
