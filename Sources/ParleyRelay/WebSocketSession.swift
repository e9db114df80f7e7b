import Foundation
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ParleyWire

/// One device's WebSocket: delivers its queue (backlog in order, then `queueEmpty`, then live), takes acks,
/// presence subscriptions, typing indicators and pings. All writes go through the delivery loop.
struct WebSocketSession: Sendable {
    let core: RelayCore
    let device: AuthenticatedDevice
    let logger: Logger

    /// Runs the session until the connection ends. Rethrows the inbound stream's protocol error (e.g. a device
    /// message over the size limit) so that the WebSocket layer closes with the matching code.
    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let (registrationId, events, own) = await core.hub.register(device)
        let selfAddress = device.address
        await core.presence.deviceConnected(account: device.account)
        try? await core.touches.touch(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.increment()
        logger.debug("device connected")

        let (wasCurrent, readError) = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await deliver(events: events, outbound: outbound)
            }
            let readError = await read(inbound: inbound, own: own)
            // The device went away (or was closed): stop the delivery loop. False if a newer connection took over.
            let wasCurrent = await core.hub.unregister(device, id: registrationId)
            await group.waitForAll()
            return (wasCurrent, readError)
        }

        if wasCurrent { await core.presence.unsubscribe(selfAddress) }
        await core.presence.deviceDisconnected(account: device.account)
        try? await core.touches.touch(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.decrement()
        logger.debug("device disconnected")
        if let readError { throw readError }
    }

    // MARK: delivery

    /// What this connection has delivered. Every queue entry with `seq <= drained` was either read from the
    /// store and sent, or was no longer queued; entries above it that arrived live are in `live`.
    private struct DeliveryState {
        var drained: Int64 = 0
        var live: Set<Int64> = []
        var sentQueueEmpty = false
    }

    /// Live entries remembered per connection before the session reads the store to forget them.
    private static let maxRememberedLive = 1_024
    private static let allocator = ByteBufferAllocator()

    private func deliver(events: AsyncStream<SessionEvent>, outbound: WebSocketOutboundWriter) async {
        var state = DeliveryState()
        do {
            try await drain(&state, outbound)
            for await event in events {
                switch event {
                case .envelope(let queued):
                    // Committed after the store was last read (or concurrently with it): send unless the read
                    // already covered it. Entries committed by other transactions (group events) come as
                    // `.wake` and are read from the store.
                    guard queued.seq > state.drained, state.live.insert(queued.seq).inserted else { continue }
                    try await write(FastWire.messageFrame(queued.envelope, allocator: Self.allocator), outbound)
                    core.metrics.messagesOut.increment()
                    if state.live.count > Self.maxRememberedLive { try await drain(&state, outbound) }
                case .wake:
                    try await drain(&state, outbound)
                case .frame(let frame):
                    try await send(frame, outbound)
                case .encoded(let buffer):
                    try await write(buffer, outbound)
                case .close(let reason):
                    if case .shutdown = reason {
                        try await outbound.close(.goingAway, reason: reason.text)
                    } else {
                        try await outbound.close(.policyViolation, reason: reason.text)
                    }
                    return
                }
            }
        } catch {
            logger.debug("delivery loop ended", metadata: ["error": "\(type(of: error))"])
            try? await outbound.close(.unexpectedServerError, reason: "delivery failed")
        }
    }

    /// Sends every queued envelope above `drained` not already sent live, oldest first; after the first full
    /// drain, `queueEmpty`. Each page is read in one snapshot taken after every live envelope this session has
    /// seen was committed, and sequence numbers grow in commit order (one writer), so afterwards everything up
    /// to the largest sequence number seen is accounted for.
    private func drain(_ state: inout DeliveryState, _ outbound: WebSocketOutboundWriter) async throws {
        let highestLive = state.live.max() ?? 0
        while true {
            let page = try await core.store.pending(device.address, afterSeq: state.drained, limit: RelayLimits.deliveryPageSize)
            var sent = 0
            for item in page {
                state.drained = item.seq
                if state.live.contains(item.seq) { continue }
                try await write(FastWire.messageFrame(item.envelope, allocator: Self.allocator), outbound)
                sent += 1
            }
            core.metrics.messagesOut.increment(by: Int64(sent))
            if page.count < RelayLimits.deliveryPageSize { break }
        }
        state.drained = max(state.drained, highestLive)
        state.live.removeAll(keepingCapacity: state.live.count < 64)
        if !state.sentQueueEmpty {
            state.sentQueueEmpty = true
            try await send(ServerFrame(type: .queueEmpty), outbound)
        }
    }

    private func send(_ frame: ServerFrame, _ outbound: WebSocketOutboundWriter) async throws {
        let data = try WireCoding.encoder().encode(frame)
        try await write(ByteBuffer(bytes: data), outbound)
    }

    private func write(_ buffer: ByteBuffer, _ outbound: WebSocketOutboundWriter) async throws {
        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: buffer)))
    }

    // MARK: reading

    /// Sends and acks in flight per connection before the session stops reading (back pressure).
    private static let maxInFlightPerConnection = 128

    /// Reads device frames until the connection ends; returns the stream's error, if any. Sends and acks wait
    /// for a commit: they run concurrently (bounded), so the next frames are read meanwhile.
    private func read(inbound: WebSocketInboundStream, own: AsyncStream<SessionEvent>.Continuation) async -> (any Error)? {
        await withTaskGroup(of: Void.self, returning: (any Error)?.self) { group in
            var inFlight = 0
            var badFrames = 0
            var frameBucket = TokenBucket(
                capacity: core.limits.clientFramesPerSecond * 5, ratePerSecond: core.limits.clientFramesPerSecond)
            do {
                for try await message in inbound.messages(maxSize: RelayLimits.maxClientFrameBytes) {
                    let outcome: FrameError?
                    if !frameBucket.take() {
                        outcome = FrameError(.rateLimited)
                    } else {
                        switch decode(message) {
                        case .failure(let error):
                            outcome = error
                        case .success(let frame) where frame.type == .ack || frame.type == .send:
                            switch prepare(frame) {
                            case .failure(let error):
                                outcome = error
                            case .success(let work):
                                outcome = nil
                                if inFlight >= Self.maxInFlightPerConnection {
                                    _ = await group.next()
                                    inFlight -= 1
                                }
                                inFlight += 1
                                group.addTask { await work(own) }
                            }
                        case .success(let frame):
                            outcome = await handle(frame, own: own)
                        }
                    }
                    guard let error = outcome else { continue }
                    badFrames += 1
                    core.metrics.badFrames.increment()
                    let requestId = error.requestId
                    own.yield(.frame(ServerFrame(type: .error, error: error.error.body, requestId: requestId)))
                    if badFrames >= core.limits.maxBadFramesPerConnection {
                        logger.notice("closing connection after repeated bad frames")
                        own.yield(.close(.abuse))
                        return nil
                    }
                }
            } catch {
                logger.debug("read loop ended", metadata: ["error": "\(type(of: error))"])
                return error
            }
            return nil
        }
    }

    /// Decodes one client frame: the common `ack`/`send` shapes on the fast path, everything else strictly.
    private func decode(_ message: WebSocketMessage) -> Result<ClientFrame, FrameError> {
        guard case .text(let text) = message else {
            return .failure(FrameError(.malformedRequest("frames must be JSON text")))
        }
        // The inbound stream enforces the limit only on fragmented messages; check single frames here.
        guard text.utf8.count <= RelayLimits.maxClientFrameBytes else {
            return .failure(FrameError(.payloadTooLarge("frame larger than \(RelayLimits.maxClientFrameBytes) bytes")))
        }
        if let frame = FastWire.decodeClientFrame(text.utf8) { return .success(frame) }
        do {
            return .success(try StrictJSON.decode(ClientFrame.self, from: Data(text.utf8)))
        } catch {
            return .failure(FrameError(error))
        }
    }

    /// Validates an `ack` or `send` frame; returns the work that commits it and answers.
    private func prepare(_ frame: ClientFrame) -> Result<@Sendable (AsyncStream<SessionEvent>.Continuation) async -> Void, FrameError> {
        let core = self.core
        let device = self.device
        let logger = self.logger
        if frame.type == .ack {
            guard let ids = frame.ids, !ids.isEmpty, ids.count <= RelayLimits.maxAckIds else {
                return .failure(FrameError(.invalidField("ack needs 1...\(RelayLimits.maxAckIds) ids")))
            }
            return .success { own in
                do {
                    let removed = try await core.acks.ack(device.address, ids: ids)
                    core.metrics.acks.increment(by: Int64(removed))
                } catch {
                    logger.error("ack failed", metadata: ["error": "\(type(of: error))"])
                    own.yield(.frame(ServerFrame(type: .error, error: RelayError.internalError.body)))
                }
            }
        }
        guard let requestId = frame.requestId else {
            return .failure(FrameError(.invalidField("send needs requestId")))
        }
        guard let recipient = frame.to, let messages = frame.messages else {
            return .failure(FrameError(.invalidField("send needs to and messages"), requestId: requestId))
        }
        let own = frame.ownDeviceMessages ?? []
        for message in messages + own {
            do {
                try InputValidation.checkCiphertext(type: message.type, content: message.content)
            } catch let error as RelayError {
                return .failure(FrameError(error, requestId: requestId))
            } catch {
                return .failure(FrameError(.internalError, requestId: requestId))
            }
        }
        let clientTimestamp = frame.clientTimestamp
        return .success { continuation in
            let now = RelayClock.nowMillis()
            let submission = MessageSubmission(
                sender: device, payload: .direct(recipient: recipient, messages: messages, own: own),
                clientTimestamp: clientTimestamp, serverTimestamp: now, expiresAt: core.expiry(from: now))
            do {
                let receipt = try await MessageRoutes.submit(submission, core: core)
                let response = SendMessageResponse(
                    serverTimestamp: receipt.serverTimestamp, queued: receipt.recipients.count, ids: receipt.ids)
                continuation.yield(.encoded(FastWire.sendResultFrame(requestId: requestId, response, allocator: Self.allocator)))
            } catch {
                let relayError = error as? RelayError ?? .internalError
                if relayError == .internalError {
                    logger.error("send failed", metadata: ["error": "\(type(of: error))"])
                }
                continuation.yield(.frame(ServerFrame(type: .error, error: relayError.body, requestId: requestId)))
            }
        }
    }

    /// Handles one client frame other than `ack` and `send`; returns the error to report, if any.
    private func handle(_ frame: ClientFrame, own: AsyncStream<SessionEvent>.Continuation) async -> FrameError? {
        do {
            switch frame.type {
            case .subscribePresence:
                guard let accounts = frame.accounts, accounts.count <= RelayLimits.maxPresenceSubscriptions else {
                    return FrameError(
                        .invalidField("subscribePresence needs at most \(RelayLimits.maxPresenceSubscriptions) accounts"))
                }
                for account in accounts { try AccountName.validate(account) }
                for state in await core.presence.subscribe(device.address, to: accounts) {
                    own.yield(.frame(state))
                }
            case .typing:
                return await forwardTyping(frame).map { FrameError($0) }
            case .ping:
                own.yield(.frame(ServerFrame(type: .pong)))
            case .ack, .send:
                return FrameError(.internalError)
            case .message, .queueEmpty, .presence, .error, .pong, .sendResult:
                return FrameError(.invalidField("frame type \(frame.type.rawValue) is not sent by devices"))
            }
        } catch let error as RelayError {
            return FrameError(error)
        } catch {
            logger.error("frame handling failed", metadata: ["error": "\(type(of: error))"])
            return FrameError(.internalError)
        }
        return nil
    }

    /// Typing indicators are ephemeral: forwarded to connected devices only, never queued.
    private func forwardTyping(_ frame: ClientFrame) async -> RelayError? {
        guard let started = frame.started else { return .invalidField("typing needs started") }
        if let groupId = frame.groupId {
            do {
                let members = try await core.store.groupMemberAccounts(groupId, requester: device.accountId)
                let out = ServerFrame(
                    type: .typing, account: device.account, deviceId: device.deviceId, groupId: groupId, started: started)
                for member in members {
                    await core.hub.send(out, toAccount: member, except: device.address)
                }
            } catch let error as RelayError {
                return error
            } catch {
                return .internalError
            }
        } else if let to = frame.to {
            let out = ServerFrame(type: .typing, account: device.account, deviceId: device.deviceId, started: started)
            await core.hub.send(out, toAccount: to, except: device.address)
        } else {
            return .invalidField("typing needs to or groupId")
        }
        return nil
    }
}

/// A refused device frame: the error, and the request id when it answers a `send` frame.
struct FrameError: Error {
    let error: RelayError
    let requestId: Int64?

    init(_ error: RelayError, requestId: Int64? = nil) {
        self.error = error
        self.requestId = requestId
    }
}
