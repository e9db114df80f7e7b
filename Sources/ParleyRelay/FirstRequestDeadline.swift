import HummingbirdCore
import Logging
import NIOCore

/// Wraps the relay's HTTP/WebSocket child channel with a deadline for the first bytes of a request.
///
/// Until a connection's first request arrives, the WebSocket-upgrade pipeline waits for it with no timeout and
/// does not take part in graceful shutdown: a client that connects and sends nothing (an HTTP client's spare
/// pooled connection, a stalled or hostile peer) would hold a file descriptor forever and keep a shutting-down
/// relay from finishing. `FirstRequestDeadlineHandler` closes such a connection after `deadline`, or at once
/// when the server starts to quiesce.
struct FirstRequestDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let deadline: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // A channel keeps its last receive buffer for the next read, also while it is idle: start it at
            // 512 bytes instead of NIO's 2,048 (an upgrade request fits; the size still adapts to the traffic,
            // up to 64 KiB). An idle WebSocket then keeps ~1.5 KB less.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536))
            try channel.pipeline.syncOperations.addHandler(FirstRequestDeadlineHandler(deadline: deadline))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes the connection unless bytes arrive within the deadline (or before the server quiesces); once they
/// do, it removes itself from the pipeline.
final class FirstRequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?
    private var received = false

    init(deadline: TimeAmount) {
        self.deadline = deadline
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
        timer = context.eventLoop.scheduleTask(in: deadline) {
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
        received = true
        disarm()
        context.fireChannelRead(data)
        // From here on the HTTP handlers (idle timeout, quiescing) or the WebSocket (pings) look after the
        // connection: leave the pipeline so that an open WebSocket does not carry this handler.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
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
