import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import ParleyWire

/// The writing side of one device's WebSocket session: what the hub and the session have for the device's
/// socket (backlog, live envelopes, ephemeral frames, close), written in the order posted.
///
/// Events are written by a delivery task that exists only while there is something to write: the first `post`
/// after a quiet period starts one, and it ends once everything posted is written. An idle connection thus holds
/// no delivery task (no task object, no async stack slabs kept at their deepest use) and no `AsyncStream`: only
/// this object.
final class SessionOutbox: Sendable {
    /// What this connection has delivered. Every queue entry with `seq <= drained` was either read from the
    /// store and sent, or was no longer queued; entries above it that arrived live are in `live`.
    struct DeliveryState: Sendable {
        var drained: Int64 = 0
        var live: Set<Int64> = []
        var sentQueueEmpty = false
    }

    private struct State: Sendable {
        /// Posted, not yet taken by a delivery task. The first job of every session: its backlog, then `queueEmpty`.
        var events: [SessionEvent] = [.wake]
        /// Delivery tasks start only once the session has called `start()`.
        var started = false
        /// False after `finish()`: later events are dropped.
        var accepting = true
        /// A close frame was written, or writing failed: later events are dropped.
        var stopped = false
        /// The running delivery task, if any.
        var task: Task<Void, Never>?
        /// Carried from one delivery task to the next.
        var delivery = DeliveryState()
        /// The session waiting in `finishAndWait()` for the running delivery task.
        var idleWaiter: CheckedContinuation<Void, Never>?
    }

    /// Live entries remembered per connection before the session reads the store to forget them.
    static let maxRememberedLive = 1_024
    static let allocator = ByteBufferAllocator()

    private let core: RelayCore
    private let device: AuthenticatedDevice
    private let outbound: WebSocketOutboundWriter
    private let state = NIOLockedValueBox(State())

    init(core: RelayCore, device: AuthenticatedDevice, outbound: WebSocketOutboundWriter) {
        self.core = core
        self.device = device
        self.outbound = outbound
    }

    /// Lets delivery begin (the backlog first); events posted before wait until now.
    func start() {
        state.withLockedValue { state in
            state.started = true
            startDeliveryIfNeeded(&state)
        }
    }

    /// Queues an event for the device's socket. Dropped once the session finished or stopped writing.
    func post(_ event: SessionEvent) {
        state.withLockedValue { state in
            guard state.accepting, !state.stopped else { return }
            state.events.append(event)
            startDeliveryIfNeeded(&state)
        }
    }

    /// Takes no more events; those already posted are still written.
    func finish() {
        state.withLockedValue { $0.accepting = false }
    }

    /// Takes no more events and waits until those already posted are written (or writing stopped). Cancelling the
    /// caller cancels the delivery task.
    func finishAndWait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let running = state.withLockedValue { state -> Bool in
                    state.accepting = false
                    guard state.task != nil else { return false }
                    state.idleWaiter = continuation
                    return true
                }
                if !running { continuation.resume() }
            }
        } onCancel: {
            state.withLockedValue { $0.task }?.cancel()
        }
    }

    private func startDeliveryIfNeeded(_ state: inout State) {
        guard state.started, state.task == nil, !state.events.isEmpty else { return }
        // Detached: the task belongs to this session, not to whoever posted (a hub or batcher task).
        state.task = Task.detached { await self.deliverPosted() }
    }

    /// Writes posted events in order until none is left, then ends.
    private func deliverPosted() async {
        var delivery = state.withLockedValue { $0.delivery }
        while true {
            let (batch, waiter) = state.withLockedValue { state -> ([SessionEvent], CheckedContinuation<Void, Never>?) in
                let batch = state.events
                state.events = []
                guard batch.isEmpty else { return (batch, nil) }
                state.delivery = delivery
                state.task = nil
                let waiter = state.idleWaiter
                state.idleWaiter = nil
                return ([], waiter)
            }
            if batch.isEmpty {
                waiter?.resume()
                return
            }
            for event in batch {
                var keepWriting = !Task.isCancelled
                if keepWriting { keepWriting = await deliver(event, &delivery) }
                if !keepWriting {
                    state.withLockedValue { state in
                        state.stopped = true
                        state.events = []
                    }
                    break
                }
            }
        }
    }

    /// Writes one event; false when the session must not write anymore (closed, or the write failed).
    private func deliver(_ event: SessionEvent, _ delivery: inout DeliveryState) async -> Bool {
        do {
            switch event {
            case .envelope(let queued):
                // Committed after the store was last read (or concurrently with it): send unless the read
                // already covered it. Entries committed by other transactions (group events) come as
                // `.wake` and are read from the store.
                guard queued.seq > delivery.drained, delivery.live.insert(queued.seq).inserted else { return true }
                try await write(FastWire.messageFrame(queued.envelope, allocator: Self.allocator))
                core.metrics.messagesOut.increment()
                if delivery.live.count > Self.maxRememberedLive { try await drain(&delivery) }
            case .wake:
                try await drain(&delivery)
            case .frame(let frame):
                try await send(frame)
            case .encoded(let buffer):
                try await write(buffer)
            case .close(let reason):
                if case .shutdown = reason {
                    try await outbound.close(.goingAway, reason: reason.text)
                } else {
                    try await outbound.close(.policyViolation, reason: reason.text)
                }
                return false
            }
            return true
        } catch {
            core.logger.debug("delivery loop ended", metadata: device.logMetadata(["error": "\(type(of: error))"]))
            try? await outbound.close(.unexpectedServerError, reason: "delivery failed")
            return false
        }
    }

    /// Sends every queued envelope above `drained` not already sent live, oldest first; after the first full
    /// drain, `queueEmpty`. Each page is read in one snapshot taken after every live envelope this session has
    /// seen was committed, and sequence numbers grow in commit order (one writer), so afterwards everything up
    /// to the largest sequence number seen is accounted for.
    private func drain(_ delivery: inout DeliveryState) async throws {
        let highestLive = delivery.live.max() ?? 0
        while true {
            let page = try await core.store.pending(
                device.address, afterSeq: delivery.drained, limit: RelayLimits.deliveryPageSize)
            var sent = 0
            for item in page {
                delivery.drained = item.seq
                if delivery.live.contains(item.seq) { continue }
                try await write(FastWire.messageFrame(item.envelope, allocator: Self.allocator))
                sent += 1
            }
            core.metrics.messagesOut.increment(by: Int64(sent))
            if page.count < RelayLimits.deliveryPageSize { break }
        }
        delivery.drained = max(delivery.drained, highestLive)
        delivery.live.removeAll(keepingCapacity: delivery.live.count < 64)
        if !delivery.sentQueueEmpty {
            delivery.sentQueueEmpty = true
            try await send(ServerFrame(type: .queueEmpty))
        }
    }

    private func send(_ frame: ServerFrame) async throws {
        let data = try WireCoding.encoder().encode(frame)
        try await write(ByteBuffer(bytes: data))
    }

    private func write(_ buffer: ByteBuffer) async throws {
        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: buffer)))
    }
}
