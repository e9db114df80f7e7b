import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The NIO end of a device's WebSocket session, after the upgrade: reads frames on the connection's event loop
/// and hands text frames to the `WebSocketSession`; answers pings, pings the device and closes a connection
/// whose pong does not come; runs the closing handshake; stops reading while too many sends and acks of this
/// connection wait for their commit (back pressure); tells the outbox when the socket is writable again or gone.
///
/// Below it in the pipeline: NIO's frame decoder (frames over `RelayLimits.maxServerFrameBytes` close the
/// connection with 1009), its protocol-error handler, and a frame aggregator (fragmented messages).
final class DeviceSessionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A user event asking the handler to close the connection with a close frame (from the outbox).
    struct Close: Sendable {
        let code: WebSocketErrorCode
        let reason: String
    }

    /// Sends and acks in flight per connection before the session stops reading (back pressure).
    static let maxInFlightPerConnection = 128
    /// How long the relay waits for the device's close frame after sending its own.
    static let closeTimeout = TimeAmount.seconds(5)

    /// Commits in flight, shared with the committing tasks that finish them.
    private final class InFlight: Sendable {
        private struct State {
            var count = 0
            var readHeld = false
        }

        private let state = NIOLockedValueBox(State())

        func add() {
            state.withLockedValue { $0.count += 1 }
        }

        /// False (and the read is held) when the limit is reached.
        func mayRead() -> Bool {
            state.withLockedValue { state in
                guard state.count >= DeviceSessionHandler.maxInFlightPerConnection else { return true }
                state.readHeld = true
                return false
            }
        }

        /// One finished; true if a held read may go on now.
        func finish() -> Bool {
            state.withLockedValue { state in
                state.count -= 1
                guard state.readHeld, state.count < DeviceSessionHandler.maxInFlightPerConnection else { return false }
                state.readHeld = false
                return true
            }
        }
    }

    private let session: WebSocketSession
    private let pingInterval: TimeAmount
    private let ended: EventLoopPromise<Void>
    private var outbox: SessionOutbox?
    private var begun: Task<Void, Never>?
    private var readState: WebSocketSession.ReadState
    private let inFlight = InFlight()
    private var stopReading = false
    private var closeSent = false
    private var awaitingPong = false
    private var pinger: RepeatedTask?
    private var closeTimer: Scheduled<Void>?
    private var finished = false

    /// `ended` completes once the session has unregistered after the connection closed.
    init(session: WebSocketSession, pingInterval: TimeAmount, ended: EventLoopPromise<Void>) {
        self.session = session
        self.pingInterval = pingInterval
        self.ended = ended
        self.readState = session.makeReadState()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let outbox = SessionOutbox(core: session.core, device: session.device, channel: context.channel)
        self.outbox = outbox
        let session = self.session
        begun = Task { await session.begin(outbox) }
        let loopSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: pingInterval, delay: pingInterval) { _ in
            loopSelf.value.heartbeat(context: loopContext.value)
        }
        if !context.channel.isActive { end(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(context: context)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        outbox?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOWebSocketFrameAggregator.Error {
            close(context: context, code: .messageTooLarge, reason: "message too large")
        } else {
            session.logger.debug("connection error", metadata: session.device.logMetadata(["error": "\(type(of: error))"]))
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let close = event as? Close {
            self.close(context: context, code: close.code, reason: close.reason)
        } else if event is ChannelShouldQuiesceEvent {
            // The server shuts down gracefully and waits for every connection to close: also for a session that
            // connected after `SessionCloser` closed the registered ones.
            close(context: context, code: .goingAway, reason: CloseReason.shutdown.text)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: reading

    func read(context: ChannelHandlerContext) {
        if inFlight.mayRead() { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        awaitingPong = false  // any frame shows the device is there
        switch frame.opcode {
        case .text:
            guard !closeSent, !stopReading, let outbox else { return }
            let next = session.receive(
                frame.unmaskedData, &readState, outbox: outbox,
                accepted: { inFlight.add() },
                done: { [inFlight = self.inFlight, channel = context.channel] in
                    if inFlight.finish() { channel.read() }
                },
                asyncOutcome: { [loopSelf = NIOLoopBound(self, eventLoop: context.eventLoop), eventLoop = context.eventLoop] error in
                    guard let error else { return }
                    eventLoop.execute { loopSelf.value.refuseLater(error) }
                })
            if case .stop = next { stopReading = true }
        case .binary:
            guard !closeSent, !stopReading, let outbox else { return }
            if case .stop = session.refuse(
                FrameError(.malformedRequest("frames must be JSON text")), &readState, outbox: outbox)
            {
                stopReading = true
            }
        case .ping:
            guard !closeSent else { return }
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            if closeSent {
                context.close(promise: nil)
            } else {
                // Echo the device's close code, then close.
                closeSent = true
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode() ?? .normalClosure
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                    .whenComplete { _ in channel.close(promise: nil) }
            }
        default:
            close(context: context, code: .protocolError, reason: "unexpected frame")
        }
    }

    /// The error of a frame handled in a task, counted like the others.
    private func refuseLater(_ error: FrameError) {
        guard !closeSent, !stopReading, let outbox else { return }
        if case .stop = session.refuse(error, &readState, outbox: outbox) { stopReading = true }
    }

    // MARK: heartbeat and closing

    /// Pings the device; closes the connection when nothing came since the previous ping.
    private func heartbeat(context: ChannelHandlerContext) {
        guard !closeSent else { return }
        if awaitingPong {
            session.logger.debug("no pong: closing", metadata: session.device.logMetadata())
            close(context: context, code: .goingAway, reason: "ping timeout")
            return
        }
        awaitingPong = true
        var data = context.channel.allocator.buffer(capacity: 8)
        data.writeInteger(UInt64.random(in: 0...UInt64.max))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: data)), promise: nil)
    }

    /// Sends a close frame and waits (bounded) for the device's.
    private func close(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        guard !closeSent else { return }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        closeTimer = context.eventLoop.scheduleTask(in: Self.closeTimeout) {
            loopContext.value.close(promise: nil)
        }
    }

    /// The connection is gone: stop the timers, tell the outbox, and end the session once it had begun.
    private func end(context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        pinger?.cancel()
        pinger = nil
        closeTimer?.cancel()
        closeTimer = nil
        guard let outbox else {
            ended.succeed()
            return
        }
        outbox.connectionClosed()
        let begun = self.begun
        let session = self.session
        let ended = self.ended
        Task {
            await begun?.value
            await session.end(outbox)
            ended.succeed()
        }
    }
}
