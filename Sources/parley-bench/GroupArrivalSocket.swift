import Foundation
import NIOCore
import NIOWebSocket

/// A member device of `client-group --first-posts` that only receives: it holds a real account and device
/// (registered by `ParleyDevice.register`, so its prekey bundle is real and the posters set up real sessions to
/// it) but, instead of running the client, keeps one WebSocket that records when each `group` envelope arrives and
/// acks every envelope. It never decrypts, so on a 2-core machine the time measured to it is the sender's work
/// plus the relay's, not 499 other members' decryptions competing for the same cores (each member's own
/// processing runs on its own device in real use; the bench times that on its fully running members).
final class GroupArrivalSocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let arrivals: GroupArrivals
    private var ready: EventLoopPromise<Void>?
    private var context: ChannelHandlerContext?
    private var fragments: ByteBuffer?

    init(arrivals: GroupArrivals, ready: EventLoopPromise<Void>) {
        self.arrivals = arrivals
        self.ready = ready
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        ready?.fail(BenchError.connectionClosed)
        ready = nil
        arrivals.socketClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready?.fail(error)
        ready = nil
        context.close(promise: nil)
    }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .continuation:
            if let whole = wholeText(frame, fragments: &fragments) { handle(whole, context: context) }
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    private func handle(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        let now = ContinuousClock.now
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any],
            let type = object["type"] as? String
        else { return }
        switch type {
        case "queueEmpty":
            ready?.succeed(())
            ready = nil
        case "message":
            guard let envelope = object["envelope"] as? [String: Any], let id = envelope["id"] as? String else { return }
            if envelope["kind"] as? String == "group", let sender = envelope["senderAccount"] as? String,
                let timestamp = (envelope["clientTimestamp"] as? NSNumber)?.int64Value
            {
                arrivals.record(GroupArrivals.key(sender: sender, clientTimestamp: timestamp), at: now)
            }
            var ack = context.channel.allocator.buffer(capacity: 64)
            ack.writeString(#"{"type":"ack","ids":[""# + id + #""]}"#)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ack)), promise: nil)
        default:
            break
        }
    }
}

/// Arrivals of messages at members: how many members have each (a body for running clients, a sender and
/// client timestamp for `GroupArrivalSocket`s), when the last one did, and the sender's timestamp of each body.
final class GroupArrivals: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var lastAt: [String: ContinuousClock.Instant] = [:]
    private var sentAt: [String: Int64] = [:]
    private var closedSockets = 0

    static func key(sender: String, clientTimestamp: Int64) -> String { "\u{1}\(sender)@\(clientTimestamp)" }

    func record(_ key: String, at instant: ContinuousClock.Instant = .now, sentAt timestamp: Int64? = nil) {
        lock.withLock {
            counts[key, default: 0] += 1
            lastAt[key] = max(lastAt[key] ?? instant, instant)
            if let timestamp { sentAt[key] = timestamp }
        }
    }

    func socketClosed() { lock.withLock { closedSockets += 1 } }

    func count(_ key: String) -> Int { lock.withLock { counts[key] ?? 0 } }
    func last(_ key: String) -> ContinuousClock.Instant? { lock.withLock { lastAt[key] } }
    func sentAt(_ key: String) -> Int64? { lock.withLock { sentAt[key] } }

    /// Waits until `count` members have `key`; fails after `timeout` or when a receiving socket closed.
    func wait(for key: String, count: Int, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while self.count(key) < count {
            let closed = lock.withLock { closedSockets }
            guard closed == 0 else { throw FirstPostBenchFailure("\(closed) receiving sockets closed") }
            guard ContinuousClock.now < deadline else {
                throw FirstPostBenchFailure("a message reached \(self.count(key)) of \(count) members within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

struct FirstPostBenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
