import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import ParleyWire

/// The writing side of one device's WebSocket session: what the hub and the session have for the device's
/// socket (backlog, live envelopes, ephemeral frames, close), written in the order posted.
///
/// Events are written on the connection's event loop, by a run that is scheduled when the first event arrives
/// after a quiet period and that writes everything posted meanwhile with one flush (one socket write for many
/// frames). Reading the device's queue from the store (`wake`) is the only step that waits: a drain task reads
/// page by page and writes each page on the event loop, and events posted meanwhile wait behind it. An idle
/// connection holds no task: only this object.
///
/// Writing pauses while the socket is not writable (a device that does not read) and resumes when it is. What
/// waits meanwhile is bounded in bytes (`RelayLimits.maxOutboxBytesPerConnection`, frames as encoded): live
/// envelopes beyond it are replaced by one `wake` (they are in the store), ephemeral frames beyond it are
/// dropped; a store page is at most `RelayLimits.deliveryPageBytes` of ciphertext and is handed to the socket
/// only once it is writable. So a stalled device costs the relay a bounded amount of memory, whatever its
/// queue holds.
final class SessionOutbox: Sendable {
    /// What this connection has delivered. Every queue entry with `seq <= drained` was either read from the
    /// store and sent, or was no longer queued; entries above it that arrived live are in `live`.
    struct DeliveryState: Sendable {
        var drained: Int64 = 0
        var live: Set<Int64> = []
        /// The largest `seq` of a live envelope held back for a drain (a gap before it): committed before the
        /// drain starts, so the drain covers everything up to it.
        var deferred: Int64 = 0
        var sentQueueEmpty = false
    }

    private struct State: Sendable {
        /// Posted, not yet written. The first job of every session: its backlog, then `queueEmpty`.
        var events: [SessionEvent] = [.wake]
        /// `estimatedBytes` of `events`.
        var eventBytes = 0
        /// Nothing is written before the session has called `start()`.
        var started = false
        /// False after `finish()`: later events are dropped.
        var accepting = true
        /// A close frame was written, writing failed or the connection is gone: later events are dropped.
        var stopped = false
        /// A run is scheduled on, or running on, the event loop.
        var running = false
        /// A drain task is reading the store; events wait behind it.
        var draining = false
        /// Writing waits for the socket to become writable.
        var blocked = false
        /// Carried from one run (or drain) to the next.
        var delivery = DeliveryState()
        /// Sessions waiting in `finishAndWait()`.
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        /// A drain waiting for the socket to become writable.
        var writableWaiter: CheckedContinuation<Void, Never>?

        var isIdle: Bool { !running && !draining && (events.isEmpty || stopped || !started) }
    }

    /// Live entries remembered per connection before the session reads the store to forget them (8 bytes each).
    static let maxRememberedLive = 1_024
    static let allocator = ByteBufferAllocator()

    private let core: RelayCore
    private let device: AuthenticatedDevice
    private let channel: any Channel
    private let state = NIOLockedValueBox(State())

    init(core: RelayCore, device: AuthenticatedDevice, channel: any Channel) {
        self.core = core
        self.device = device
        self.channel = channel
    }

    /// Lets delivery begin (the backlog first); events posted before wait until now.
    func start() {
        let run = state.withLockedValue { state in
            state.started = true
            return Self.claimRun(&state)
        }
        if run { scheduleRun() }
    }

    /// Queues an event for the device's socket. Dropped once the session finished or stopped writing; beyond
    /// the outbox's byte budget, an envelope is left to the store (read again later) and an ephemeral frame is
    /// dropped.
    func post(_ event: SessionEvent) {
        let size = event.estimatedBytes
        let budget = core.limits.maxOutboxBytesPerConnection
        let run = state.withLockedValue { state -> Bool in
            guard state.accepting, !state.stopped else { return false }
            if size > 0, state.eventBytes + size > budget {
                if case .envelope = event {
                    // The store has it: fold it into a drain instead of holding it in memory.
                    core.metrics.outboxFolds.increment()
                    if case .wake = state.events.last {} else { state.events.append(.wake) }
                    return Self.claimRun(&state)
                }
                if event.isEphemeral {
                    core.metrics.outboxDrops.increment()
                    return false
                }
                // Answers to the device's own frames (`sendResult`, `error`): bounded by the frames the session
                // reads, and it reads none while the socket is not writable.
            }
            state.events.append(event)
            state.eventBytes += size
            return Self.claimRun(&state)
        }
        if run { scheduleRun() }
    }

    /// Ends the session at once (device removed, superseded): drops what waits (envelopes stay in the store),
    /// takes nothing more, and has the handler close the connection without waiting for anything queued before.
    func abort(_ reason: CloseReason) {
        let (writable, idle) = state.withLockedValue { state in
            state.accepting = false
            state.stopped = true
            state.events = []
            state.eventBytes = 0
            let writable = state.writableWaiter
            state.writableWaiter = nil
            return (writable, Self.takeIdleWaiters(&state))
        }
        writable?.resume()
        for waiter in idle { waiter.resume() }
        let channel = self.channel
        let close = DeviceSessionHandler.Close(code: reason.code, reason: reason.text, immediate: true)
        channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(close) }
    }

    /// Takes no more events; those already posted are still written.
    func finish() {
        state.withLockedValue { $0.accepting = false }
    }

    /// Takes no more events and waits until those already posted are written (or writing stopped).
    func finishAndWait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLockedValue { state -> Bool in
                state.accepting = false
                guard !state.isIdle else { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    /// Bytes this session holds for its socket (tests): posted events not yet written, estimated as encoded,
    /// plus what the channel has taken but not yet written to the socket.
    func heldBytes() async -> Int {
        let pending = state.withLockedValue { $0.eventBytes }
        let buffered = (try? await channel.getOption(ChannelOptions.bufferedWritableBytes).get()) ?? 0
        return pending + buffered
    }

    /// The connection is gone: nothing more can be written.
    func connectionClosed() {
        let (writable, idle) = state.withLockedValue { state in
            state.stopped = true
            state.events = []
            state.eventBytes = 0
            let writable = state.writableWaiter
            state.writableWaiter = nil
            return (writable, Self.takeIdleWaiters(&state))
        }
        writable?.resume()
        for waiter in idle { waiter.resume() }
    }

    /// The socket became writable again (from the channel handler, on the event loop).
    func writabilityChanged() {
        guard channel.isWritable else { return }
        let (writable, run) = state.withLockedValue { state in
            let writable = state.writableWaiter
            state.writableWaiter = nil
            state.blocked = false
            return (writable, Self.claimRun(&state))
        }
        writable?.resume()
        if run { scheduleRun() }
    }

    // MARK: writing on the event loop

    private static func claimRun(_ state: inout State) -> Bool {
        guard state.started, !state.running, !state.draining, !state.blocked, !state.stopped, !state.events.isEmpty
        else { return false }
        state.running = true
        return true
    }

    private static func takeIdleWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        guard state.isIdle, !state.idleWaiters.isEmpty else { return [] }
        defer { state.idleWaiters = [] }
        return state.idleWaiters
    }

    private func scheduleRun() {
        channel.eventLoop.execute { self.run() }
    }

    /// How a run ended.
    private enum RunEnd {
        case idle
        case drain
        case blocked
        case stopped
    }

    /// Writes what is posted, in order, with one flush; hands over to a drain task at a `wake`.
    private func run() {
        var delivery = state.withLockedValue { $0.delivery }
        var written = 0
        var end = RunEnd.idle
        var envelopesOut = 0
        outer: while true {
            let batch = state.withLockedValue { state -> [SessionEvent] in
                defer {
                    state.events = []
                    state.eventBytes = 0
                }
                return state.events
            }
            if batch.isEmpty { break }
            for (index, event) in batch.enumerated() {
                if !channel.isActive {
                    end = .stopped
                    break outer
                }
                if !channel.isWritable {
                    requeue(batch[index...])
                    end = .blocked
                    break outer
                }
                switch event {
                case .envelope(let queued):
                    // Committed after the store was last read (or concurrently with it): send unless the read
                    // already covered it. Entries committed by other transactions (group events) come as
                    // `.wake` and are read from the store.
                    guard queued.seq > delivery.drained, !delivery.live.contains(queued.seq) else { continue }
                    if let previous = queued.previousSeq, previous > delivery.drained, !delivery.live.contains(previous) {
                        // An earlier entry of this queue (committed on another relay node) has not been sent on
                        // this connection: read the store first, so that the device gets its queue in order.
                        delivery.deferred = max(delivery.deferred, queued.seq)
                        requeue([.wake] + batch[index...])
                        end = .drain
                        break outer
                    }
                    delivery.live.insert(queued.seq)
                    write(FastWire.messageFrame(queued.envelope, allocator: Self.allocator))
                    if DeliveryTrace.isEnabled {
                        DeliveryTrace.line("W \(DeliveryTrace.id(device.address, queued.seq)) \(DeliveryTrace.clock())")
                    }
                    envelopesOut += 1
                    written += 1
                    if delivery.live.count > Self.maxRememberedLive {
                        requeue([.wake] + batch[(index + 1)...])
                        end = .drain
                        break outer
                    }
                case .wake:
                    requeue(batch[index...])
                    end = .drain
                    break outer
                case .frame(let frame):
                    guard let data = try? WireCoding.encoder().encode(frame) else { continue }
                    write(ByteBuffer(bytes: data))
                    written += 1
                case .encoded(let buffer):
                    write(buffer)
                    written += 1
                case .close(let reason):
                    channel.flush()
                    written = 0
                    channel.pipeline.fireUserInboundEventTriggered(DeviceSessionHandler.Close(code: reason.code, reason: reason.text))
                    end = .stopped
                    break outer
                }
            }
        }
        if written > 0 { channel.flush() }
        if envelopesOut > 0 { core.metrics.messagesOut.increment(by: Int64(envelopesOut)) }
        let (again, idle) = state.withLockedValue { state in
            state.delivery = delivery
            state.running = false
            switch end {
            case .idle: break
            case .drain: state.draining = true
            case .blocked: state.blocked = true
            case .stopped:
                state.stopped = true
                state.events = []
                state.eventBytes = 0
            }
            // Events posted after the last batch was taken (they saw a run going on) get a run of their own.
            return (Self.claimRun(&state), Self.takeIdleWaiters(&state))
        }
        for waiter in idle { waiter.resume() }
        if again { scheduleRun() }
        if end == .drain {
            // The task belongs to this session, not to whoever posted.
            Task.detached { await self.drainThenResume() }
        } else if end == .blocked, channel.isWritable {
            writabilityChanged()  // became writable between the check and the state change
        }
    }

    /// Puts events back in front of those posted meanwhile.
    private func requeue(_ events: some Collection<SessionEvent>) {
        let bytes = events.reduce(0) { $0 + $1.estimatedBytes }
        state.withLockedValue { state in
            guard !state.stopped else { return }
            state.events = Array(events) + state.events
            state.eventBytes += bytes
        }
    }

    private func write(_ buffer: ByteBuffer) {
        channel.write(WebSocketFrame(fin: true, opcode: .text, data: buffer), promise: nil)
    }

    // MARK: reading the store

    private func drainThenResume() async {
        var delivery = state.withLockedValue { $0.delivery }
        // The `wake` that started the drain is still first in line.
        state.withLockedValue { state in
            if case .wake = state.events.first { state.events.removeFirst() }
            // Consecutive wakes are covered by this one drain.
            while case .wake = state.events.first { state.events.removeFirst() }
        }
        var failed = false
        do {
            try await drain(&delivery)
        } catch {
            failed = true
            core.logger.debug("delivery failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
            let channel = self.channel
            channel.eventLoop.execute {
                channel.pipeline.fireUserInboundEventTriggered(
                    DeviceSessionHandler.Close(code: .unexpectedServerError, reason: "delivery failed"))
            }
        }
        let (run, idle) = state.withLockedValue { state in
            state.delivery = delivery
            state.draining = false
            if failed {
                state.stopped = true
                state.events = []
                state.eventBytes = 0
            }
            return (Self.claimRun(&state), Self.takeIdleWaiters(&state))
        }
        for waiter in idle { waiter.resume() }
        if run { scheduleRun() }
    }

    /// Sends every queued envelope above `drained` not already sent live, oldest first; after the first full
    /// drain, `queueEmpty`. Each page is read in one snapshot taken after every live envelope this session has
    /// seen (or held back) was committed, and a device's sequence numbers grow in commit order (see
    /// `QueuedEnvelope`), so afterwards everything up to the largest sequence number seen is accounted for. A
    /// page (at most `deliveryPageSize` envelopes and about `deliveryPageBytes` of ciphertext) is read only
    /// once the socket is writable.
    private func drain(_ delivery: inout DeliveryState) async throws {
        let highestLive = max(delivery.live.max() ?? 0, delivery.deferred)
        while true {
            guard await waitWritable() else { return }
            let page = try await core.store.pending(
                device.address, afterSeq: delivery.drained, limit: RelayLimits.deliveryPageSize,
                maxBytes: RelayLimits.deliveryPageBytes)
            if state.withLockedValue({ $0.stopped }) { return }
            var frames: [ByteBuffer] = []
            frames.reserveCapacity(page.count)
            var pageBytes = 0
            for item in page {
                delivery.drained = item.seq
                pageBytes += item.envelope.content.count
                if delivery.live.contains(item.seq) { continue }
                frames.append(FastWire.messageFrame(item.envelope, allocator: Self.allocator))
                if DeliveryTrace.isEnabled {
                    DeliveryTrace.line("D \(DeliveryTrace.id(device.address, item.seq)) \(DeliveryTrace.clock())")
                }
            }
            if !frames.isEmpty {
                writeOnLoop(frames)
                core.metrics.messagesOut.increment(by: Int64(frames.count))
            }
            // A page cut short by neither limit was the last.
            if page.count < RelayLimits.deliveryPageSize, pageBytes < RelayLimits.deliveryPageBytes { break }
        }
        delivery.drained = max(delivery.drained, highestLive)
        delivery.deferred = 0
        delivery.live.removeAll(keepingCapacity: delivery.live.count < 64)
        if !delivery.sentQueueEmpty {
            delivery.sentQueueEmpty = true
            let data = try WireCoding.encoder().encode(ServerFrame(type: .queueEmpty))
            writeOnLoop([ByteBuffer(bytes: data)])
        }
    }

    /// Writes frames with one flush, on the event loop (in order with the runs, which are scheduled there too).
    private func writeOnLoop(_ frames: [ByteBuffer]) {
        let channel = self.channel
        channel.eventLoop.execute {
            for frame in frames {
                channel.write(WebSocketFrame(fin: true, opcode: .text, data: frame), promise: nil)
            }
            channel.flush()
        }
    }

    /// Waits until the socket is writable; false if the connection is gone or writing stopped.
    private func waitWritable() async -> Bool {
        while !channel.isWritable {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool in
                    if state.stopped || channel.isWritable { return true }
                    state.writableWaiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
            if state.withLockedValue({ $0.stopped }) { return false }
        }
        return channel.isActive
    }
}
