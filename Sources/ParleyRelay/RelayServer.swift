import Crypto
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOSSL
import Logging
import ServiceLifecycle

/// Builds and runs the relay: Hummingbird HTTP + WebSocket server, the store (SQLite or PostgreSQL), background services.
public enum RelayServer {
    /// Runs until SIGTERM or SIGINT, then shuts down gracefully (executable entry point).
    public static func run(_ configuration: RelayConfiguration) async throws {
        let logger = makeLogger(configuration)
        let (services, _) = try await makeServices(configuration, logger: logger, onPort: { _ in }, onMetricsPort: { _ in })
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(configuration.limits.gracefulShutdownSeconds)
        defer { DeliveryTrace.flush() }
        try await ServiceGroup(configuration: groupConfiguration).run()
    }

    /// Starts the relay in the background (tests, embedding). Returns once it listens.
    public static func start(_ configuration: RelayConfiguration) async throws -> RunningRelay {
        let logger = makeLogger(configuration)
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let (metricsStream, metricsContinuation) = AsyncStream<Int>.makeStream()
        let (services, core) = try await makeServices(
            configuration, logger: logger,
            onPort: { port in
                portContinuation.yield(port)
                portContinuation.finish()
            },
            onMetricsPort: { port in
                metricsContinuation.yield(port)
                metricsContinuation.finish()
            })
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(configuration.limits.gracefulShutdownSeconds)
        let group = ServiceGroup(configuration: groupConfiguration)
        let task = Task {
            defer {
                portContinuation.finish()
                metricsContinuation.finish()
            }
            try await group.run()
        }
        var iterator = portStream.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await task.value
            throw RelayStartError.didNotStart
        }
        var metricsPort: Int?
        if configuration.metrics != nil {
            var metricsIterator = metricsStream.makeAsyncIterator()
            metricsPort = await metricsIterator.next()
            guard metricsPort != nil else {
                try await task.value
                throw RelayStartError.didNotStart
            }
        }
        return RunningRelay(port: port, metricsPort: metricsPort, group: group, task: task, core: core)
    }

    static func makeLogger(_ configuration: RelayConfiguration) -> Logger {
        var logger = Logger(label: "parley-relay")
        logger.logLevel = configuration.logLevel
        logger[metadataKey: "database"] = "\(RelayBackend.describe(configuration.databasePath))"
        return logger
    }

    static func makeServices(
        _ configuration: RelayConfiguration, logger: Logger, onPort: @escaping @Sendable (Int) -> Void,
        onMetricsPort: @escaping @Sendable (Int) -> Void
    ) async throws -> ([any Service], RelayCore) {
        let (store, cluster) = try await RelayBackend.open(configuration, logger: logger)
        let vapid = try await loadVAPIDKey(store: store, subject: configuration.vapidSubject)
        let core = RelayCore(
            store: store, limits: configuration.limits, vapid: vapid, logger: logger,
            pushResolver: configuration.pushAddressResolver ?? SystemPushAddressResolver.shared,
            cluster: cluster)

        let router = Router(context: RelayRequestContext.self)
        router.middlewares.add(ErrorMappingMiddleware(logger: logger))
        router.middlewares.add(FloodLimitMiddleware(limits: configuration.limits))
        OpsRoutes(core: core).register(on: router)
        AccountRoutes(core: core).register(on: router)
        LinkRoutes(core: core).register(on: router)
        PreKeyRoutes(core: core).register(on: router)
        MessageRoutes(core: core).register(on: router)
        GroupRoutes(core: core).register(on: router)
        PushRoutes(core: core).register(on: router)

        let authenticator = Authenticator(store: store)
        let tickets = core.tickets
        let authenticate: RelayChannel.Authenticate = { authorization, ticket in
            if let ticket {
                // A ticket works once (spent here, at the upgrade), and only while its device still exists with
                // the credential that issued it (the store decides: on any node, after any removal).
                guard let redeemed = tickets.redeem(ticket),
                    try await authenticator.stillValid(redeemed.device, credentialHash: redeemed.credentialHash)
                else { throw RelayError.unauthorized }
                return (redeemed.device, redeemed.credentialHash)
            }
            var headers = HTTPFields()
            if let authorization { headers[.authorization] = authorization }
            return try await authenticator.authenticateWithCredential(headers)
        }
        let http1 = HTTP1Channel.Configuration(idleTimeout: .seconds(configuration.limits.httpIdleTimeoutSeconds))
        let tlsConfiguration = try configuration.tls.map { try Self.tlsConfiguration($0) }
        let server = HTTPServerBuilder { responder in
            let channel = RelayChannel(
                responder: responder, core: core, http1: http1, authenticate: authenticate, logger: logger)
            if let tlsConfiguration { return try TLSChannel(channel, tlsConfiguration: tlsConfiguration) }
            return channel
        }
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "parley-relay"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("relay listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
                onPort(port)
            },
            logger: logger)
        var services: [any Service] = [
            StoreCloser(core: core), ClusterService(core: core), ConnectionDrainer(tasks: core.connectionTasks), app,
        ]
        if let metrics = configuration.metrics {
            services.append(Self.metricsApplication(metrics, core: core, logger: logger, onPort: onMetricsPort))
        }
        // ServiceGroup stops services in reverse order: sessions first, then the server, the connections still being
        // served, the cluster membership, the store last.
        return (services + [ExpiryService(core: core), MemoryReturnService(logger: logger), SessionCloser(core: core)], core)
    }

    /// `/metrics` on a listener of its own (not the public port: it is unauthenticated).
    static func metricsApplication(
        _ listener: RelayConfiguration.MetricsListener, core: RelayCore, logger: Logger,
        onPort: @escaping @Sendable (Int) -> Void
    ) -> some Service {
        let router = Router()
        OpsRoutes(core: core).registerMetrics(on: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(listener.host, port: listener.port), serverName: "parley-relay-metrics"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listener.port
                logger.info("metrics listening", metadata: ["host": "\(listener.host)", "port": "\(port)"])
                onPort(port)
            },
            logger: logger)
    }
}

extension RelayServer {
    /// TLS from PEM files: the certificate chain (leaf first) and its private key.
    static func tlsConfiguration(_ files: RelayConfiguration.TLSFiles) throws -> TLSConfiguration {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChainPath)
            guard !chain.isEmpty else { throw RelayStartError.tls("no certificate in \(files.certificateChainPath)") }
            let key = try NIOSSLPrivateKey(file: files.privateKeyPath, format: .pem)
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        } catch let error as RelayStartError {
            throw error
        } catch {
            throw RelayStartError.tls("cannot load the TLS certificate or key: \(error)")
        }
    }

    /// The VAPID key is created on first start and kept in the database: push subscriptions are bound to it.
    static func loadVAPIDKey(store: any RelayStore, subject: String) async throws -> VAPIDSigner {
        let raw = try await store.setting("vapid_private_key") { P256.Signing.PrivateKey().rawRepresentation }
        return try VAPIDSigner(rawPrivateKey: raw, subject: subject)
    }
}

/// The relay could not be started.
public enum RelayStartError: Error, CustomStringConvertible {
    case didNotStart
    /// The TLS certificate or key could not be used.
    case tls(String)

    public var description: String {
        switch self {
        case .didNotStart: return "the relay did not start"
        case .tls(let reason): return reason
        }
    }
}

/// A relay started with `RelayServer.start`.
public final class RunningRelay: Sendable {
    public let port: Int
    /// The metrics listener's port, when `RelayConfiguration.metrics` is set.
    public let metricsPort: Int?
    private let group: ServiceGroup
    private let task: Task<Void, any Error>
    let core: RelayCore

    init(port: Int, metricsPort: Int?, group: ServiceGroup, task: Task<Void, any Error>, core: RelayCore) {
        self.port = port
        self.metricsPort = metricsPort
        self.group = group
        self.task = task
        self.core = core
    }

    /// Graceful shutdown: closes WebSockets, stops the server, waits for it (cancelled after
    /// `RelayLimits.gracefulShutdownSeconds` if it does not finish).
    public func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}
