import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import ParleyWire

/// The relay's connection: HTTP/1.1 requests go to Hummingbird's router; an upgrade to `GET /v1/ws` becomes a
/// device session served by `DeviceSessionHandler` directly on the connection's event loop.
///
/// Every accepted connection is first counted by the `ConnectionGovernor` (closed at once when its address
/// holds its share, or when the relay is full of device sessions). Its first request head must be complete
/// within `firstRequestTimeoutSeconds` (`FirstRequestDeadlineHandler`); an HTTP connection then gets the
/// body-rate and unwritable-socket deadlines of `HTTPRequestGuard`.
///
/// The shape follows hummingbird-websocket's `HTTP1WebSocketUpgradeChannel`, except for what runs after the
/// upgrade: there, every frame crosses an async channel into a task; here the session reads and writes on the
/// event loop and many frames go out in one socket write (see `SessionOutbox`). The upgrade is refused with
/// `401` (wrong credentials or ticket) or `404` (another path), with the relay's JSON error body.
struct RelayChannel: ServerChildChannel, HTTPChannelHandler {
    enum Upgrade: Sendable {
        /// A device session; completes once it has ended.
        case session(EventLoopFuture<Void>)
        /// Refused at accept (`ConnectionGovernor`): already closed.
        case dropped
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, RelayError)
    }

    struct Value: ServerChildChannelValue {
        let upgrade: EventLoopFuture<Upgrade>
        let channel: any Channel
    }

    /// Authenticates an upgrade request (its `Authorization` header or `ticket` query parameter): the device and
    /// the hash of its credential (the session checks it against the store again when it registers).
    typealias Authenticate = @Sendable (_ authorization: String?, _ ticket: String?) async throws
        -> (device: AuthenticatedDevice, credentialHash: Data)

    let responder: HTTPChannelHandler.Responder
    let core: RelayCore
    let http1: HTTP1Channel.Configuration
    let authenticate: Authenticate
    let logger: Logger

    init(
        responder: @escaping HTTPChannelHandler.Responder, core: RelayCore, http1: HTTP1Channel.Configuration,
        authenticate: @escaping Authenticate, logger: Logger
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.core = core
        self.http1 = http1
        self.authenticate = authenticate
        self.logger = logger
    }

    /// What the upgrade decided, kept between `shouldUpgrade` and the pipeline set-up of one connection.
    private enum Decision {
        case none
        case device(AuthenticatedDevice, credentialHash: Data)
        case refused(RelayError)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let connection: UInt64
            switch core.connections.admit(channel) {
            case .success(let id):
                connection = id
            case .failure(let refusal):
                logger.trace("connection refused", metadata: ["reason": "\(refusal)"])
                channel.close(promise: nil)
                return Value(upgrade: channel.eventLoop.makeSucceededFuture(.dropped), channel: channel)
            }
            // A channel keeps its last receive buffer for the next read, also while it is idle: start it at
            // 512 bytes instead of NIO's 2,048 (an upgrade request fits; the size still adapts to the traffic,
            // up to 64 KiB). An idle WebSocket then keeps ~1.5 KB less.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536))
            let decision = NIOLoopBoundBox(Decision.none, eventLoop: channel.eventLoop)
            let core = self.core
            let authenticate = self.authenticate
            let sessionLogger = self.logger
            let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
                maxFrameSize: RelayLimits.maxServerFrameBytes,
                shouldUpgrade: { channel, head in
                    let promise = channel.eventLoop.makePromise(of: Decision.self)
                    promise.completeWithTask {
                        await Self.decide(head, authenticate: authenticate)
                    }
                    return promise.futureResult.map { result in
                        decision.value = result
                        if case .device = result { return HTTPHeaders() }
                        return nil
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard case .device(let device, let credentialHash) = decision.value else {
                            throw RelayError.unauthorized
                        }
                        core.connections.becameSession(connection)
                        let ended = channel.eventLoop.makePromise(of: Void.self)
                        do {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 1_024,
                                    maxAccumulatedFrameSize: RelayLimits.maxServerFrameBytes))
                            try channel.pipeline.syncOperations.addHandler(
                                DeviceSessionHandler(
                                    session: WebSocketSession(
                                        core: core, device: device, credentialHash: credentialHash, logger: sessionLogger),
                                    pingInterval: .seconds(core.limits.pingIntervalSeconds),
                                    unwritableTimeout: .seconds(core.limits.unwritableTimeoutSeconds), ended: ended))
                        } catch {
                            ended.fail(error)
                            throw error
                        }
                        return Upgrade.session(ended.futureResult)
                    }
                })
            let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration<Upgrade>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(self.http1.additionalChannelHandlers())
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: self.http1.idleTimeout.map { .init($0) }, logger: logger))
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPRequestGuard(
                                grace: .seconds(core.limits.requestBodyGraceSeconds),
                                minBytesPerSecond: core.limits.minRequestBodyBytesPerSecond,
                                unwritableTimeout: .seconds(core.limits.unwritableTimeoutSeconds),
                                onTimeout: { core.connections.timedOut($0) }))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true))
                        if case .refused(let error) = decision.value { return Upgrade.refused(asyncChannel, error) }
                        return Upgrade.notUpgraded(asyncChannel)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Upgrade>(
                upgradeConfiguration: upgradeConfiguration)
            configuration.enablePipelining = false  // HTTP is pipelined by NIOAsyncChannel
            configuration.enableErrorHandling = false  // Hummingbird answers malformed requests
            configuration.enableResponseHeaderValidation = false  // swift-http-types validates them
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let upgrade = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: configuration)
            // The first head's deadline, right after the decoder (it sees decoded heads, not bytes).
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(
                FirstRequestDeadlineHandler(
                    deadline: .seconds(core.limits.firstRequestTimeoutSeconds),
                    onTimeout: { core.connections.timedOut(.head) }),
                position: .after(decoder))
            return Value(upgrade: upgrade, channel: channel)
        }
    }

    /// Hands the connection to `RelayCore.connectionTasks` and returns (see `ConnectionTasks`: Hummingbird's task
    /// group per server is quadratic in a burst of closes).
    func handle(value: Value, logger: Logger) async {
        core.connectionTasks.run { await serve(value, logger: logger) }
    }

    private func serve(_ value: Value, logger: Logger) async {
        do {
            switch try await value.upgrade.get() {
            case .session(let ended):
                // A forced shutdown cancels this task: closing the connection ends the session.
                let channel = value.channel
                try await withTaskCancellationHandler {
                    try await ended.get()
                } onCancel: {
                    channel.close(promise: nil)
                }
            case .notUpgraded(let http1):
                await handleHTTP(asyncChannel: http1, logger: logger)
            case .refused(let http1, let error):
                await refuse(http1, error)
            case .dropped:
                break
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before the upgrade")
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(type(of: error))"])
        }
    }

    /// Whether an upgrade request may become a device session.
    private static func decide(_ head: HTTPRequestHead, authenticate: Authenticate) async -> Decision {
        let components = URLComponents(string: head.uri)
        guard components?.path == "/v1/ws" else { return .refused(.notFound("no such WebSocket endpoint")) }
        let ticket = components?.queryItems?.first { $0.name == "ticket" }?.value
        do {
            let (device, credentialHash) = try await authenticate(head.headers.first(name: "authorization"), ticket)
            return .device(device, credentialHash: credentialHash)
        } catch let error as RelayError {
            return .refused(error)
        } catch {
            return .refused(.unauthorized)
        }
    }

    /// Answers a refused upgrade with the error's status and JSON body, then closes.
    private func refuse(_ asyncChannel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, _ error: RelayError) async {
        let body = (try? WireCoding.encoder().encode(error.body)) ?? Data()
        let head = HTTPResponse(
            status: error.status, headerFields: [.connection: "close", .contentType: "application/json", .contentLength: "\(body.count)"])
        do {
            try await asyncChannel.executeThenClose { _, outbound in
                try await outbound.write(contentsOf: [.head(head), .body(ByteBuffer(bytes: body)), .end(nil)])
            }
        } catch {
            logger.trace("could not answer a refused upgrade", metadata: ["error": "\(type(of: error))"])
        }
    }

    /// NIO's upgrade handler looks for an upgrade only in a connection's first request. A later request asking
    /// for one is redirected to the same URI with the connection closed, so that the client retries on a new
    /// connection (as hummingbird-websocket does).
    private static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder)
        -> HTTPChannelHandler.Responder
    {
        struct RedirectedUpgrade: Error {}
        return { request, responseWriter, channel in
            if request.headers[.upgrade]?.lowercased() == "websocket" {
                var path = request.uri.path
                if let query = request.uri.query { path += "?\(query)" }
                let response = HTTPResponse(
                    status: .temporaryRedirect, headerFields: [.connection: "close", .location: path])
                try await responseWriter.writeResponse(response)
                throw RedirectedUpgrade()
            }
            try await responder(request, responseWriter, channel)
        }
    }
}
