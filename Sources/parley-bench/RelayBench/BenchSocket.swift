import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC; shared by every thread of this process).
func monotonicNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// The 200-byte (by default) bench payload: 8 bytes of scheduled send time (monotonic ns, big endian), a
/// marker byte, then filler. Because the varying part is 9 bytes (a multiple of 3), its base64 is exactly
/// the first 12 characters and the rest of the base64 text is the same for every message.
struct BenchPayload: Sendable {
    static let marker: UInt8 = 0xB7
    let size: Int
    /// Base64 of the bytes after the 9-byte prefix.
    let suffix: [UInt8]

    init(size: Int) {
        precondition(size >= 9, "payload must be at least 9 bytes")
        self.size = size
        let filler = Data((0..<(size - 9)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        suffix = Array(filler.base64EncodedString().utf8)
    }

    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Appends the payload's base64 for a message scheduled at `scheduled`.
    func write(scheduled: UInt64, into buffer: inout ByteBuffer) {
        var prefix = [UInt8](repeating: 0, count: 9)
        for index in 0..<8 { prefix[index] = UInt8(truncatingIfNeeded: scheduled >> (56 - 8 * UInt64(index))) }
        prefix[8] = Self.marker
        var out = [UInt8](repeating: 0, count: 12)
        for group in 0..<3 {
            let b0 = UInt32(prefix[group * 3]), b1 = UInt32(prefix[group * 3 + 1]), b2 = UInt32(prefix[group * 3 + 2])
            let n = b0 << 16 | b1 << 8 | b2
            out[group * 4] = Self.alphabet[Int(n >> 18 & 63)]
            out[group * 4 + 1] = Self.alphabet[Int(n >> 12 & 63)]
            out[group * 4 + 2] = Self.alphabet[Int(n >> 6 & 63)]
            out[group * 4 + 3] = Self.alphabet[Int(n & 63)]
        }
        buffer.writeBytes(out)
        buffer.writeBytes(suffix)
    }

    /// The full payload bytes (for HTTP bodies that go through JSONEncoder).
    func bytes(scheduled: UInt64) -> Data {
        var data = Data(count: size)
        for index in 0..<8 { data[index] = UInt8(truncatingIfNeeded: scheduled >> (56 - 8 * UInt64(index))) }
        data[8] = Self.marker
        for index in 9..<size { data[index] = UInt8(truncatingIfNeeded: (index - 9) &* 31 &+ 7) }
        return data
    }

    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Scheduled time from the first 12 base64 characters of a payload, or nil if it is not a bench payload.
    static func scheduled(fromBase64 text: UnsafeRawBufferPointer) -> UInt64? {
        guard text.count >= 12 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 9)
        for group in 0..<3 {
            var n: UInt32 = 0
            for offset in 0..<4 {
                let value = reverse[Int(text[group * 4 + offset])]
                guard value != 0xFF else { return nil }
                n = n << 6 | UInt32(value)
            }
            bytes[group * 3] = UInt8(n >> 16 & 0xFF)
            bytes[group * 3 + 1] = UInt8(n >> 8 & 0xFF)
            bytes[group * 3 + 2] = UInt8(n & 0xFF)
        }
        guard bytes[8] == marker else { return nil }
        var value: UInt64 = 0
        for index in 0..<8 { value = value << 8 | UInt64(bytes[index]) }
        return value
    }
}

/// A latency histogram: 1 us to 120 s, 3 significant digits.
func newHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
}

/// Counters and latency histograms of the sockets of one event loop. Confined to that loop.
final class LoopStats: @unchecked Sendable {
    /// Envelopes received (any kind).
    var envelopes: UInt64 = 0
    /// Bench payloads received.
    var delivered: UInt64 = 0
    /// `sendResult` frames received (sends committed durably).
    var committed: UInt64 = 0
    /// Sends written.
    var sent: UInt64 = 0
    /// `error` frames received.
    var errors: UInt64 = 0
    var firstError: String?
    /// Ack frames and ids written.
    var ackFrames: UInt64 = 0
    var ackedIds: UInt64 = 0
    /// Closed loop: keep sending after each answer.
    var running = false
    /// Fan-out: per scheduled time (one group message), how many members got it and the latest arrival (ns).
    var perMessage: [UInt64: (count: Int, latest: UInt64)]?
    /// Payloads scheduled before this (monotonic ns) are not recorded in `latency` (warm-up).
    var recordFrom: UInt64 = .max
    /// Payloads scheduled at or after this are not recorded either (cool-down).
    var recordUntil: UInt64 = .max
    /// Scheduled send -> delivery at the recipient socket, microseconds; one histogram per run of
    /// `runLength` ns starting at `recordFrom`.
    var latencyRuns = [newHistogram()]
    var runLength: UInt64 = .max
    var latency: Histogram<UInt64> {
        get { latencyRuns[0] }
        set { latencyRuns[0] = newValue }
    }
    /// Send written -> `sendResult` read, microseconds (closed-loop modes).
    var commitLatency = newHistogram()
    /// When set (relay-abuse): the scheduled times of sends the relay acknowledged (`sendResult`), and of bench
    /// payloads received, to find acknowledged messages that never arrived.
    var acknowledged: Set<UInt64>?
    var received: Set<UInt64>?
    /// `error` frames answering sends, by error code (when `acknowledged` is set).
    var refusedSends: [String: Int] = [:]

    struct Snapshot: Sendable {
        var envelopes: UInt64 = 0
        var delivered: UInt64 = 0
        var committed: UInt64 = 0
        var sent: UInt64 = 0
        var errors: UInt64 = 0
        var ackFrames: UInt64 = 0
        var ackedIds: UInt64 = 0
        var firstError: String?

        static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(
                envelopes: a.envelopes + b.envelopes, delivered: a.delivered + b.delivered, committed: a.committed + b.committed,
                sent: a.sent + b.sent, errors: a.errors + b.errors, ackFrames: a.ackFrames + b.ackFrames,
                ackedIds: a.ackedIds + b.ackedIds, firstError: a.firstError ?? b.firstError)
        }

        static func - (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(
                envelopes: a.envelopes - b.envelopes, delivered: a.delivered - b.delivered, committed: a.committed - b.committed,
                sent: a.sent - b.sent, errors: a.errors - b.errors, ackFrames: a.ackFrames - b.ackFrames,
                ackedIds: a.ackedIds - b.ackedIds, firstError: a.firstError)
        }
    }

    var snapshot: Snapshot {
        Snapshot(
            envelopes: envelopes, delivered: delivered, committed: committed, sent: sent, errors: errors, ackFrames: ackFrames,
            ackedIds: ackedIds, firstError: firstError)
    }
}

/// One device's WebSocket to the relay, on raw swift-nio: reads envelopes (records latency from the payload's
/// scheduled time, acks in batches), answers pings, sends pre-encoded `send` frames. Confined to its event loop.
final class BenchSocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let stats: LoopStats
    let eventLoop: any EventLoop
    let payload: BenchPayload
    /// Max ids per ack frame, and how long ids may wait for more before the ack frame is written.
    let ackBatch: Int
    let ackDelay: TimeAmount
    /// Closed loop: called (on the loop) after each `sendResult`/error answering a send.
    var onAnswer: ((BenchSocket) -> Void)?

    private var context: ChannelHandlerContext?
    private var ready: EventLoopPromise<Void>?
    private var pendingAcks: [UInt8] = []
    private var pendingAckCount = 0
    private var ackScheduled = false
    private var fragments: ByteBuffer?
    /// The `send` frame up to the content (recipient, device, registration id), pre-encoded.
    private var sendPrefix: [UInt8] = []
    private var nextRequestId: Int64 = 1
    private var sentAt: [Int64: UInt64] = [:]
    /// Scheduled time per request id, while `stats.acknowledged` is tracked.
    private var sentScheduled: [Int64: UInt64] = [:]
    var inFlight = 0

    init(stats: LoopStats, eventLoop: any EventLoop, payload: BenchPayload, ackBatch: Int, ackDelay: TimeAmount, ready: EventLoopPromise<Void>) {
        self.stats = stats
        self.eventLoop = eventLoop
        self.payload = payload
        self.ackBatch = ackBatch
        self.ackDelay = ackDelay
        self.ready = ready
    }

    /// Sets the recipient of this socket's `send` frames.
    func setPeer(account: String, deviceId: UInt32, registrationId: UInt32) {
        sendPrefix = Array(
            #"{"type":"send","to":"\#(account)","messages":[{"deviceId":\#(deviceId),"registrationId":\#(registrationId),"type":1,"content":""#
                .utf8)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready?.fail(BenchError.connectionClosed)
        ready = nil
        closed = true
        context.fireChannelInactive()
    }

    /// True once the relay or the network closed the connection.
    var closed = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready?.fail(error)
        ready = nil
        context.close(promise: nil)
    }

    var isActive: Bool { context?.channel.isActive ?? false }

    // MARK: sending

    /// Writes one `send` frame whose payload carries `scheduled` (monotonic ns).
    func send(scheduled: UInt64, flush: Bool = true) {
        guard let context else { return }
        let requestId = nextRequestId
        nextRequestId += 1
        var buffer = context.channel.allocator.buffer(capacity: sendPrefix.count + payload.suffix.count + 48)
        buffer.writeBytes(sendPrefix)
        payload.write(scheduled: scheduled, into: &buffer)
        buffer.writeString(#""}],"requestId":"#)
        buffer.writeString(String(requestId))
        buffer.writeString("}")
        sentAt[requestId] = monotonicNanos()
        if stats.acknowledged != nil { sentScheduled[requestId] = scheduled }
        inFlight += 1
        stats.sent += 1
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
        if flush {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(wrapOutboundOut(frame), promise: nil)
        }
    }

    func flush() {
        context?.flush()
    }

    func close() {
        guard let context else { return }
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: context.channel.allocator.buffer(capacity: 0))
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .continuation:
            if let whole = wholeText(frame, fragments: &fragments) { handleText(whole) }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    private static let envelopeTag = Array(#"{"envelope""#.utf8)
    private static let requestTag = Array(#"{"requestId":"#.utf8)
    private static let idKey = Array(#""id":""#.utf8)
    private static let contentKey = Array(#""content":""#.utf8)
    private static let queueEmpty = Array(#""queueEmpty""#.utf8)
    private static let requestIdKey = Array(#""requestId":"#.utf8)

    private func handleText(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            if Self.starts(bytes, Self.envelopeTag) {
                handleEnvelope(bytes)
            } else if Self.starts(bytes, Self.requestTag) {
                let id = Self.integer(bytes, at: Self.requestTag.count)
                if stats.acknowledged != nil, let id, let scheduled = sentScheduled.removeValue(forKey: id) {
                    stats.acknowledged?.insert(scheduled)
                }
                answered(id)
                stats.committed += 1
            } else if Self.find(bytes, Self.queueEmpty, from: 0) != nil {
                ready?.succeed(())
                ready = nil
            } else {
                stats.errors += 1
                if stats.firstError == nil { stats.firstError = String(decoding: bytes.prefix(400), as: UTF8.self) }
                if let at = Self.find(bytes, Self.requestIdKey, from: 0) {
                    let id = Self.integer(bytes, at: at + Self.requestIdKey.count)
                    if stats.acknowledged != nil, let id, sentScheduled.removeValue(forKey: id) != nil {
                        stats.refusedSends[Self.errorCode(bytes), default: 0] += 1
                    }
                    answered(id)
                }
            }
        }
    }

    private func answered(_ requestId: Int64?) {
        if let requestId, let start = sentAt.removeValue(forKey: requestId) {
            inFlight -= 1
            _ = stats.commitLatency.record((monotonicNanos() &- start) / 1_000)
            onAnswer?(self)
        }
    }

    private func handleEnvelope(_ bytes: UnsafeRawBufferPointer) {
        let now = monotonicNanos()
        stats.envelopes += 1
        if let at = Self.find(bytes, Self.contentKey, from: 0), at + Self.contentKey.count + 12 <= bytes.count,
            let scheduled = BenchPayload.scheduled(
                fromBase64: UnsafeRawBufferPointer(rebasing: bytes[(at + Self.contentKey.count)..<(at + Self.contentKey.count + 12)]))
        {
            stats.delivered += 1
            stats.received?.insert(scheduled)
            if scheduled >= stats.recordFrom, scheduled < stats.recordUntil {
                let run = stats.runLength == .max ? 0 : Int((scheduled - stats.recordFrom) / stats.runLength)
                if run < stats.latencyRuns.count {
                    _ = stats.latencyRuns[run].record(now >= scheduled ? (now - scheduled) / 1_000 : 0)
                }
                if stats.perMessage != nil {
                    let entry = stats.perMessage?[scheduled] ?? (0, 0)
                    stats.perMessage?[scheduled] = (entry.count + 1, max(entry.latest, now))
                }
            }
        }
        if let at = Self.find(bytes, Self.idKey, from: 0), at + Self.idKey.count + 36 <= bytes.count {
            let start = at + Self.idKey.count
            if pendingAckCount > 0 { pendingAcks.append(UInt8(ascii: ",")) }
            pendingAcks.append(UInt8(ascii: "\""))
            pendingAcks.append(contentsOf: bytes[start..<(start + 36)])
            pendingAcks.append(UInt8(ascii: "\""))
            pendingAckCount += 1
            if pendingAckCount >= ackBatch {
                flushAcks()
            } else if !ackScheduled {
                ackScheduled = true
                eventLoop.scheduleTask(in: ackDelay) { [self] in
                    ackScheduled = false
                    flushAcks()
                }
            }
        }
    }

    private func flushAcks() {
        guard pendingAckCount > 0, let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: pendingAcks.count + 24)
        buffer.writeString(#"{"type":"ack","ids":["#)
        buffer.writeBytes(pendingAcks)
        buffer.writeString("]}")
        stats.ackFrames += 1
        stats.ackedIds += UInt64(pendingAckCount)
        pendingAcks.removeAll(keepingCapacity: true)
        pendingAckCount = 0
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)), promise: nil)
    }

    // MARK: byte helpers

    private static let codeKey = Array(#""code":""#.utf8)

    /// The `code` of an error frame ("?" if absent).
    private static func errorCode(_ bytes: UnsafeRawBufferPointer) -> String {
        guard let at = find(bytes, codeKey, from: 0) else { return "?" }
        var end = at + codeKey.count
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(at + codeKey.count)..<end]), as: UTF8.self)
    }

    private static func starts(_ bytes: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        for index in 0..<prefix.count where bytes[index] != prefix[index] { return false }
        return true
    }

    static func find(_ bytes: UnsafeRawBufferPointer, _ needle: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        var index = from
        let last = bytes.count - needle.count
        while index <= last {
            if bytes[index] == first {
                var match = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    private static func integer(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Int64? {
        var index = start
        var value: Int64 = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            value = value * 10 + Int64(bytes[index] - 0x30)
            index += 1
        }
        return index > start ? value : nil
    }
}

/// The whole text message once `frame` completes it (fragments collected in `fragments` until then), else nil.
func wholeText(_ frame: WebSocketFrame, fragments: inout ByteBuffer?) -> ByteBuffer? {
    var data = frame.unmaskedData
    guard !frame.fin || fragments != nil else { return data }
    if fragments == nil { fragments = data } else { fragments?.writeBuffer(&data) }
    guard frame.fin, let whole = fragments else { return nil }
    fragments = nil
    return whole
}

/// Writes the upgrade request when the connection is up; fails `ready` if the relay refuses the upgrade.
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let path: String
    let authorization: String
    let ready: EventLoopPromise<Void>
    /// Set once the upgrade succeeded (the handler is then removed) or `ready` was failed.
    var done = false

    init(host: String, path: String, authorization: String, ready: EventLoopPromise<Void>) {
        self.host = host
        self.path = path
        self.authorization = authorization
        self.ready = ready
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        headers.add(name: "Authorization", value: authorization)
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.status != .switchingProtocols {
            fail(BenchError.upgradeRefused(Int(head.status.code)))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(BenchError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        guard !done else { return }
        done = true
        ready.fail(error)
    }
}

enum BenchError: Error, CustomStringConvertible {
    case connectionClosed
    case upgradeRefused(Int)
    case http(String)
    case relay(String)

    var description: String {
        switch self {
        case .connectionClosed: "connection closed"
        case .upgradeRefused(let status): "WebSocket upgrade refused: HTTP \(status)"
        case .http(let text): "HTTP: \(text)"
        case .relay(let text): "relay: \(text)"
        }
    }
}

/// Opens one authenticated WebSocket; the future completes once the relay sent `queueEmpty` (backlog done).
func connectBenchSocket(
    on eventLoop: any EventLoop, host: String, port: Int, authorization: String, stats: LoopStats, payload: BenchPayload,
    ackBatch: Int = 64, ackDelay: TimeAmount = .milliseconds(5)
) -> EventLoopFuture<BenchSocket> {
    let ready = eventLoop.makePromise(of: Void.self)
    let socket = BenchSocket(
        stats: stats, eventLoop: eventLoop, payload: payload, ackBatch: ackBatch, ackDelay: ackDelay, ready: ready)
    return connectWebSocket(on: eventLoop, host: host, port: port, authorization: authorization, handler: socket, ready: ready)
}

/// Opens one authenticated WebSocket to the relay's `/v1/ws` with `handler` on it once upgraded; the future
/// completes when `ready` does (the handler completes it, e.g. on `queueEmpty`) and fails if the upgrade does.
func connectWebSocket<Handler: ChannelInboundHandler & Sendable>(
    on eventLoop: any EventLoop, host: String, port: Int, authorization: String, handler: Handler, ready: EventLoopPromise<Void>
) -> EventLoopFuture<Handler> where Handler.InboundIn == WebSocketFrame {
    let bootstrap = ClientBootstrap(group: eventLoop)
        .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            let request = UpgradeRequestHandler(host: "\(host):\(port)", path: "/v1/ws", authorization: authorization, ready: ready)
            let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 21, automaticErrorHandling: true) { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    request.done = true
                    channel.pipeline.syncOperations.removeHandler(request, promise: nil)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            let configuration: NIOHTTPClientUpgradeSendableConfiguration = (upgraders: [upgrader], completionHandler: { _ in })
            return channel.eventLoop.makeCompletedFuture {
                // Bytes after the 101 in the same read (the relay's first frames) must reach the WebSocket decoder.
                try channel.pipeline.syncOperations.addHTTPClientHandlers(
                    leftOverBytesStrategy: .forwardBytes, withClientUpgrade: configuration)
                try channel.pipeline.syncOperations.addHandler(request)
            }
        }
    let connected = bootstrap.connect(host: host, port: port)
    connected.whenFailure { ready.fail($0) }
    return ready.futureResult.map { handler }
}
