import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Closes a new connection unless its first request head is complete within `deadline` of the accept (or
/// before the server starts to quiesce). One byte, or a head that trickles in, does not stop the clock: the
/// handler sits after the HTTP decoder and disarms on the decoded head only (it then leaves the pipeline).
/// The clock includes a TLS handshake.
///
/// Until a connection's first head arrives, NIO's upgrade pipeline waits for it with no timeout and does not
/// take part in graceful shutdown: without this deadline a peer that sends nothing, or a partial head, would
/// hold a file descriptor (and a graceful shutdown) for as long as it likes. Later requests of a keep-alive
/// connection are bounded by the idle timeout (`HTTPConnectionStateHandler`), their bodies by `HTTPRequestGuard`.
final class FirstRequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let deadline: TimeAmount
    private let onTimeout: @Sendable () -> Void
    private var timer: Scheduled<Void>?
    private var received = false

    init(deadline: TimeAmount, onTimeout: @escaping @Sendable () -> Void) {
        self.deadline = deadline
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil, !received else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let onTimeout = self.onTimeout
        timer = context.eventLoop.scheduleTask(in: deadline) {
            onTimeout()
            Self.leave(loopBound.value)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    /// Ends the connection as if the peer had closed its side (the upgrade handler then ends quietly instead
    /// of reporting an error), then closes it.
    private static func leave(_ context: ChannelHandlerContext) {
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !received else {
            context.fireChannelRead(data)
            return
        }
        if case .head = unwrapInboundIn(data) {
            received = true
            disarm()
            context.fireChannelRead(data)
            // From here on the HTTP handlers (idle timeout, body rate, quiescing) or the WebSocket (pings) look
            // after the connection: leave the pipeline (an open WebSocket does not carry this handler).
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, !received {
            // Nothing in flight on this connection: leave now instead of holding the shutdown.
            Self.leave(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }
}

/// Deadlines of an HTTP connection (not upgraded) beyond the first head:
///
/// * a request body must keep an average rate of `minBytesPerSecond` once `grace` has passed since its head
///   (so a body of n bytes has `grace + n / minBytesPerSecond` at most); a body that trickles slower closes
///   the connection;
/// * a socket unwritable for `unwritableTimeout` in all (`UnwritableWatch`; the peer does not read its responses, e.g.
///   pipelining requests without reading) resets the connection (`resetConnection`); the idle timeout does not apply while a
///   response is pending.
///
/// One timer per deadline, rescheduled only when it fires (a body part just adds to a counter).
final class HTTPRequestGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let grace: TimeAmount
    private let minBytesPerSecond: Int64
    private let unwritable: UnwritableWatch
    private let onTimeout: @Sendable (ConnectionGovernor.Timeout) -> Void

    /// When the current request's head arrived, and body bytes since; nil between requests.
    private var body: (start: NIODeadline, received: Int64)?
    private var bodyTimer: Scheduled<Void>?

    init(
        grace: TimeAmount, minBytesPerSecond: Int, unwritableTimeout: TimeAmount,
        onTimeout: @escaping @Sendable (ConnectionGovernor.Timeout) -> Void
    ) {
        self.grace = grace
        self.minBytesPerSecond = Int64(max(1, minBytesPerSecond))
        self.unwritable = UnwritableWatch(limit: unwritableTimeout)
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !context.channel.isWritable { armUnwritable(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    private func cancelTimers() {
        bodyTimer?.cancel()
        bodyTimer = nil
        unwritable.stop()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            body = (.now(), 0)
            scheduleBodyCheck(context, at: .now() + grace)
        case .body(let buffer):
            body?.received += Int64(buffer.readableBytes)
        case .end:
            body = nil
            bodyTimer?.cancel()
            bodyTimer = nil
        }
        context.fireChannelRead(data)
    }

    /// The time by which the current body must have made more progress.
    private func bodyDeadline() -> NIODeadline? {
        guard let body else { return nil }
        return body.start + grace + .nanoseconds(body.received * 1_000_000_000 / minBytesPerSecond)
    }

    private func scheduleBodyCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        bodyTimer?.cancel()
        let loopSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        bodyTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            loopSelf.value.checkBody(loopContext.value)
        }
    }

    private func checkBody(_ context: ChannelHandlerContext) {
        bodyTimer = nil
        guard let deadline = bodyDeadline() else { return }
        if deadline > .now() {
            scheduleBodyCheck(context, at: deadline)
        } else {
            onTimeout(.body)
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            unwritable.writable(on: context.eventLoop)
        } else {
            armUnwritable(context)
        }
        context.fireChannelWritabilityChanged()
    }

    private func armUnwritable(_ context: ChannelHandlerContext) {
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let onTimeout = self.onTimeout
        unwritable.unwritable(on: context.eventLoop) {
            onTimeout(.unwritable)
            loopContext.value.resetConnection()
        }
    }
}
