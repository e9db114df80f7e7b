import Foundation
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ParleyWire

/// One device's WebSocket: delivers its queue (backlog in order, then `queueEmpty`, then live), takes acks,
/// presence subscriptions, typing indicators and pings. All writes go through the session's `SessionOutbox`.
///
/// The session runs on the connection's task and reads; the outbox writes from a task of its own that exists only
/// while there is something to write. The logger gets the session's metadata (account, device) only when a
/// message is logged, so an idle session keeps no copy of it.
struct WebSocketSession: Sendable {
    let core: RelayCore
    let device: AuthenticatedDevice
    let logger: Logger

    /// Runs the session until the connection ends. Rethrows the inbound stream's protocol error (e.g. a device
    /// message over the size limit) so that the WebSocket layer closes with the matching code.
    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let outbox = SessionOutbox(core: core, device: device, outbound: outbound)
        await core.hub.register(device, outbox)
        let selfAddress = device.address
        await core.presence.deviceConnected(account: device.account)
        try? await core.touches.touch(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.increment()
        logger.debug("device connected", metadata: device.logMetadata())
        outbox.start()

        let readError = await read(inbound: inbound, outbox: outbox)
        // The device went away (or was closed): stop delivery once what was posted is written. False if a newer
        // connection took over.
        let wasCurrent = await core.hub.unregister(device, outbox)
        await outbox.finishAndWait()

        if wasCurrent { await core.presence.unsubscribe(selfAddress) }
        await core.presence.deviceDisconnected(account: device.account)
        try? await core.touches.touch(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.decrement()
        logger.debug("device disconnected", metadata: device.logMetadata())
        if let readError { throw readError }
    }

    // MARK: reading

    /// Sends and acks in flight per connection before the session stops reading (back pressure).
    private static let maxInFlightPerConnection = 128

    /// What the read loop keeps from one device message to the next.
    private struct ReadState {
        var inFlight = 0
        var badFrames = 0
        var frameBucket: TokenBucket
    }

    /// Reads device frames until the connection ends; returns the stream's error, if any. Sends and acks wait
    /// for a commit: they run concurrently (bounded), so the next frames are read meanwhile.
    private func read(inbound: WebSocketInboundStream, outbox: SessionOutbox) async -> (any Error)? {
        await withTaskGroup(of: Void.self, returning: (any Error)?.self) { group in
            var state = ReadState(
                frameBucket: TokenBucket(
                    capacity: core.limits.clientFramesPerSecond * 5, ratePerSecond: core.limits.clientFramesPerSecond))
            do {
                for try await message in inbound.messages(maxSize: RelayLimits.maxClientFrameBytes) {
                    guard await process(message, &state, &group, outbox) else { return nil }
                }
            } catch {
                logger.debug("read loop ended", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                return error
            }
            return nil
        }
    }

    /// Handles one device message; false once the connection is to be closed (too many bad frames). Not inlined
    /// into the read loop: an idle connection keeps the loop's async frame (at its largest), so it stays small,
    /// and the frame for handling a message is only taken once a message arrives.
    @inline(never)
    private func process(
        _ message: WebSocketMessage, _ state: inout ReadState, _ group: inout TaskGroup<Void>, _ outbox: SessionOutbox
    ) async -> Bool {
        let outcome: FrameError?
        if !state.frameBucket.take() {
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
                    if state.inFlight >= Self.maxInFlightPerConnection {
                        _ = await group.next()
                        state.inFlight -= 1
                    }
                    state.inFlight += 1
                    group.addTask { await work(outbox) }
                }
            case .success(let frame):
                outcome = await handle(frame, outbox: outbox)
            }
        }
        guard let error = outcome else { return true }
        state.badFrames += 1
        core.metrics.badFrames.increment()
        let requestId = error.requestId
        outbox.post(.frame(ServerFrame(type: .error, error: error.error.body, requestId: requestId)))
        if state.badFrames >= core.limits.maxBadFramesPerConnection {
            logger.notice("closing connection after repeated bad frames", metadata: device.logMetadata())
            outbox.post(.close(.abuse))
            return false
        }
        return true
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
    private func prepare(_ frame: ClientFrame) -> Result<@Sendable (SessionOutbox) async -> Void, FrameError> {
        let core = self.core
        let device = self.device
        let logger = self.logger
        if frame.type == .ack {
            guard let ids = frame.ids, !ids.isEmpty, ids.count <= RelayLimits.maxAckIds else {
                return .failure(FrameError(.invalidField("ack needs 1...\(RelayLimits.maxAckIds) ids")))
            }
            return .success { outbox in
                do {
                    let removed = try await core.acks.ack(device.address, ids: ids)
                    core.metrics.acks.increment(by: Int64(removed))
                } catch {
                    logger.error("ack failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                    outbox.post(.frame(ServerFrame(type: .error, error: RelayError.internalError.body)))
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
            } catch {
                return .failure(FrameError(error, requestId: requestId))
            }
        }
        let clientTimestamp = frame.clientTimestamp
        return .success { outbox in
            let now = RelayClock.nowMillis()
            let submission = MessageSubmission(
                sender: device, payload: .direct(recipient: recipient, messages: messages, own: own),
                clientTimestamp: clientTimestamp, serverTimestamp: now, expiresAt: core.expiry(from: now))
            do {
                let receipt = try await MessageRoutes.submit(submission, core: core)
                let response = SendMessageResponse(
                    serverTimestamp: receipt.serverTimestamp, queued: receipt.recipients.count, ids: receipt.ids)
                outbox.post(.encoded(FastWire.sendResultFrame(requestId: requestId, response, allocator: SessionOutbox.allocator)))
            } catch {
                let relayError = error as? RelayError ?? .internalError
                if relayError == .internalError {
                    logger.error("send failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                }
                outbox.post(.frame(ServerFrame(type: .error, error: relayError.body, requestId: requestId)))
            }
        }
    }

    /// Handles one client frame other than `ack` and `send`; returns the error to report, if any.
    private func handle(_ frame: ClientFrame, outbox: SessionOutbox) async -> FrameError? {
        do {
            switch frame.type {
            case .subscribePresence:
                guard let accounts = frame.accounts, accounts.count <= RelayLimits.maxPresenceSubscriptions else {
                    return FrameError(
                        .invalidField("subscribePresence needs at most \(RelayLimits.maxPresenceSubscriptions) accounts"))
                }
                for account in accounts { try AccountName.validate(account) }
                for state in await core.presence.subscribe(device.address, to: accounts) {
                    outbox.post(.frame(state))
                }
            case .typing:
                return await forwardTyping(frame).map { FrameError($0) }
            case .ping:
                outbox.post(.frame(ServerFrame(type: .pong)))
            case .ack, .send:
                return FrameError(.internalError)
            case .message, .queueEmpty, .presence, .error, .pong, .sendResult:
                return FrameError(.invalidField("frame type \(frame.type.rawValue) is not sent by devices"))
            }
        } catch {
            return FrameError(error)  // every step above throws `RelayError` (typed throws)
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

extension AuthenticatedDevice {
    /// A session's log metadata (account, device) plus `extra`. Built only when a message is logged (the
    /// `metadata:` argument is an autoclosure), so a session does not keep a logger copy with its own metadata.
    func logMetadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["account"] = "\(account)"
        metadata["device"] = "\(deviceId)"
        return metadata
    }
}
