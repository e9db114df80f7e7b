import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The NIO end of a device's WebSocket session, after the upgrade: reads frames on the connection's event loop
/// and hands text frames to the `WebSocketSession`; answers pings, pings the device and closes a connection
/// whose pong does not come; runs the closing handshake; stops reading while too many sends and acks of this
/// connection wait for their commit (back pressure); tells the outbox when the socket is writable again or gone.
///
/// A device that does not read costs bounded memory and is let go: while its socket is not writable the
/// handler reads nothing from it (so its frames produce no answers to hold), answers only its latest ping
/// (RFC 6455 §5.5.3 allows that) and only once the socket is writable, and closes the connection when the
/// socket has been unwritable for `unwritableTimeout` in all (`UnwritableWatch`). Only a pong that echoes the relay's own ping keeps the
/// connection alive: other frames (and unsolicited pongs) do not, so a device that sends without reading is
/// closed at the ping timeout too.
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
        /// Close the socket right after the close frame (if it can be written at all), without waiting for the
        /// device's: the session is over whatever the device does (removed, superseded).
        var immediate = false
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
    private let unwritable: UnwritableWatch
    private let ended: EventLoopPromise<Void>
    private var outbox: SessionOutbox?
    private var begun: Task<Bool, Never>?
    private var readState: WebSocketSession.ReadState
    private let inFlight = InFlight()
    private var stopReading = false
    private var closeSent = false
    /// The payload of the relay's last ping while its pong is awaited.
    private var awaitedPong: UInt64?
    /// The payload of the device's latest ping, answered once the socket is writable (older ones are not).
    private var pendingPong: ByteBuffer?
    /// A read was withheld because the socket was not writable.
    private var readHeldForWritability = false
    private var pinger: RepeatedTask?
    private var closeTimer: Scheduled<Void>?
    private var finished = false

    /// `ended` completes once the session has unregistered after the connection closed.
    init(session: WebSocketSession, pingInterval: TimeAmount, unwritableTimeout: TimeAmount, ended: EventLoopPromise<Void>) {
        self.session = session
        self.pingInterval = pingInterval
        self.unwritable = UnwritableWatch(limit: unwritableTimeout)
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
        if context.channel.isWritable {
            unwritable.writable(on: context.eventLoop)
            writePendingPong(context: context)
            if readHeldForWritability {
                readHeldForWritability = false
                read(context: context)
            }
        } else if !finished {
            let loopSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            unwritable.unwritable(on: context.eventLoop) {
                loopSelf.value.unwritableTimedOut(context: loopContext.value)
            }
        }
        outbox?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    /// The socket has been unwritable for `unwritableTimeout` in all (`UnwritableWatch`): a close frame could not reach it, so the socket is
    /// closed.
    private func unwritableTimedOut(context: ChannelHandlerContext) {
        guard !context.channel.isWritable else { return }
        session.core.connections.timedOut(.unwritable)
        session.logger.debug("socket not writable for too long: closing", metadata: session.device.logMetadata())
        closeSent = true
        context.resetConnection()
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
            if close.immediate {
                closeNow(context: context, code: close.code, reason: close.reason)
            } else {
                self.close(context: context, code: close.code, reason: close.reason)
            }
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
        guard context.channel.isWritable else {
            // What the device sends now would be answered into a socket it does not read.
            readHeldForWritability = true
            return
        }
        if inFlight.mayRead() { context.read() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        writePendingPong(context: context)
        context.fireChannelReadComplete()
    }

    /// Answers the device's latest ping, if the socket takes it now.
    private func writePendingPong(context: ChannelHandlerContext) {
        guard let pong = pendingPong, context.channel.isWritable, !closeSent else { return }
        pendingPong = nil
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: pong)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
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
            // Within the frame rate only; answered when this read is complete, only the latest of a burst, and
            // only into a writable socket.
            guard !closeSent, !stopReading, let outbox else { return }
            let (answer, next) = session.takePing(&readState, outbox: outbox)
            if answer { pendingPong = frame.unmaskedData }
            if case .stop = next { stopReading = true }
        case .pong:
            var data = frame.unmaskedData
            if let awaited = awaitedPong, data.readableBytes == 8, data.readInteger(as: UInt64.self) == awaited {
                awaitedPong = nil
            }
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

    /// Pings the device; closes the connection when the pong to the previous ping has not come.
    private func heartbeat(context: ChannelHandlerContext) {
        guard !closeSent else { return }
        if awaitedPong != nil {
            session.core.connections.timedOut(.ping)
            session.logger.debug("no pong: closing", metadata: session.device.logMetadata())
            close(context: context, code: .goingAway, reason: "ping timeout")
            return
        }
        let payload = UInt64.random(in: 0...UInt64.max)
        awaitedPong = payload
        var data = context.channel.allocator.buffer(capacity: 8)
        data.writeInteger(payload)
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

    /// Ends the session at once: a close frame if the socket takes it, then the socket is closed without
    /// waiting for the device's close frame. Nothing the device sends afterwards is read.
    private func closeNow(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        if !closeSent, context.channel.isWritable {
            var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
            data.write(webSocketErrorCode: code)
            data.writeString(reason)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        }
        closeSent = true
        stopReading = true
        context.close(promise: nil)
    }

    /// The connection is gone: stop the timers, tell the outbox, and end the session once it had begun.
    private func end(context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        pinger?.cancel()
        pinger = nil
        closeTimer?.cancel()
        closeTimer = nil
        unwritable.stop()
        pendingPong = nil
        guard let outbox else {
            ended.succeed()
            return
        }
        outbox.connectionClosed()
        let begun = self.begun
        let session = self.session
        let ended = self.ended
        Task {
            let registered = await begun?.value ?? false
            await session.end(outbox, registered: registered)
            ended.succeed()
        }
    }
}
