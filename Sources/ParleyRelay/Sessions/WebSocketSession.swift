import Foundation
import Logging
import NIOCore
import ParleyWire

/// One device's WebSocket session: delivers its queue (backlog in order, then `queueEmpty`, then live), takes
/// sends, acks, presence subscriptions, typing indicators and pings. All writes go through the session's
/// `SessionOutbox`.
///
/// `DeviceSessionHandler` calls `receive` on the connection's event loop for every text frame. Sends and acks
/// are validated there and handed to the group committers with a completion handler: no task, actor hop or
/// continuation per frame. Only the rare frames that need other components (presence, typing) run in a task.
/// The logger gets the session's metadata (account, device) only when a message is logged.
struct WebSocketSession: Sendable {
    let core: RelayCore
    let device: AuthenticatedDevice
    /// SHA-256 of the credential (or the ticket's) that authenticated the upgrade.
    let credentialHash: Data
    let logger: Logger

    /// Registers the session: the hub routes the device's envelopes to `outbox`, presence counts it. Then
    /// delivery begins (the backlog first). Returns false, with the connection being closed, if the device was
    /// removed since the upgrade was authenticated.
    func begin(_ outbox: SessionOutbox) async -> Bool {
        await core.hub.register(device, outbox)
        // A removal that committed between the upgrade's authentication and the registration found no session
        // to end. Checked after registering: a removal that commits later finds this session in the hub.
        let valid: Bool
        do {
            valid = try await Authenticator(store: core.store).stillValid(device, credentialHash: credentialHash)
        } catch {
            valid = false
        }
        guard valid else {
            await core.hub.unregister(device, outbox)
            outbox.abort(.deviceRemoved)
            return false
        }
        await core.presence.deviceConnected(account: device.account)
        try? await core.touches.touch(device.address, now: RelayClock.nowMillis())
        core.metrics.connections.increment()
        logger.debug("device connected", metadata: device.logMetadata())
        outbox.start()
        return true
    }

    /// The connection ended: unregisters the session (unless a newer connection took over) once what was posted
    /// is written or can no longer be. `registered`: what `begin` returned.
    func end(_ outbox: SessionOutbox, registered: Bool) async {
        guard registered else {
            await outbox.finishAndWait()
            return
        }
        let wasCurrent = await core.hub.unregister(device, outbox)
        await outbox.finishAndWait()
        if wasCurrent { await core.presence.unsubscribe(device.address) }
        await core.presence.deviceDisconnected(account: device.account)
        try? await core.touches.touch(device.address, now: RelayClock.nowMillis())
        core.metrics.connections.decrement()
        logger.debug("device disconnected", metadata: device.logMetadata())
    }

    // MARK: reading

    /// What the read side keeps from one device frame to the next (owned by the event loop).
    struct ReadState {
        var badFrames = 0
        var frameBucket: TokenBucket
    }

    /// What the handler does after a frame.
    enum Next {
        case keepReading
        /// Too many bad frames: the outbox closes the connection; read nothing more.
        case stop
    }

    func makeReadState() -> ReadState {
        ReadState(
            frameBucket: TokenBucket(
                capacity: core.limits.clientFramesPerSecond * 5, ratePerSecond: core.limits.clientFramesPerSecond))
    }

    /// Handles one text frame. `done` runs once per accepted `send` or `ack` when it was committed (or failed),
    /// from the committing task; the caller counts those in flight for back pressure. `asyncOutcome` reports the
    /// error of a frame handled in a task (presence, typing), on any thread.
    func receive(
        _ text: ByteBuffer, _ state: inout ReadState, outbox: SessionOutbox,
        accepted: () -> Void, done: @escaping @Sendable () -> Void,
        asyncOutcome: @escaping @Sendable (FrameError?) -> Void
    ) -> Next {
        let outcome: FrameError?
        if !state.frameBucket.take() {
            outcome = FrameError(.rateLimited)
        } else {
            switch decode(text) {
            case .failure(let error):
                outcome = error
            case .success(let frame) where frame.type == .ack:
                outcome = ack(frame, outbox: outbox, accepted: accepted, done: done)
            case .success(let frame) where frame.type == .send:
                outcome = send(frame, outbox: outbox, accepted: accepted, done: done)
            case .success(let frame):
                outcome = handle(frame, outbox: outbox, asyncOutcome: asyncOutcome)
            }
        }
        guard let error = outcome else { return .keepReading }
        return refuse(error, &state, outbox: outbox)
    }

    /// Answers a refused frame; after too many, closes the connection.
    func refuse(_ error: FrameError, _ state: inout ReadState, outbox: SessionOutbox) -> Next {
        state.badFrames += 1
        core.metrics.badFrames.increment()
        outbox.post(.frame(ServerFrame(type: .error, error: error.error.body, requestId: error.requestId)))
        if state.badFrames >= core.limits.maxBadFramesPerConnection {
            logger.notice("closing connection after repeated bad frames", metadata: device.logMetadata())
            outbox.post(.close(.abuse))
            return .stop
        }
        return .keepReading
    }

    /// A WebSocket ping from the device: it takes a frame token like any frame. Beyond the rate it is not
    /// answered and counts as a refused frame (without an error frame: the device is flooding, not asking);
    /// after too many, the connection is closed at once. Returns whether to answer it.
    func takePing(_ state: inout ReadState, outbox: SessionOutbox) -> (answer: Bool, next: Next) {
        if state.frameBucket.take() { return (true, .keepReading) }
        state.badFrames += 1
        core.metrics.badFrames.increment()
        if state.badFrames >= core.limits.maxBadFramesPerConnection {
            logger.notice("closing connection after a flood of pings", metadata: device.logMetadata())
            outbox.abort(.abuse)
            return (false, .stop)
        }
        return (false, .keepReading)
    }

    /// Decodes one client frame: the common `ack`/`send` shapes on the fast path, everything else strictly.
    private func decode(_ text: ByteBuffer) -> Result<ClientFrame, FrameError> {
        // The frame aggregator allows up to the WebSocket limit; JSON frames have a smaller one. ParleyWire's
        // `ClientFrameDecoding` is the whole decision (size, fast path, strict decoder with the frame limits),
        // shared with the `relay-frame` fuzz target.
        switch ClientFrameDecoding.decode(text.readableBytesView) {
        case .success(let frame): return .success(frame)
        case .failure(.tooLarge(let limit)): return .failure(FrameError(.payloadTooLarge("frame larger than \(limit) bytes")))
        case .failure(.invalid(let error)): return .failure(FrameError(RelayError(error)))
        }
    }

    private func ack(
        _ frame: ClientFrame, outbox: SessionOutbox, accepted: () -> Void, done: @escaping @Sendable () -> Void
    ) -> FrameError? {
        guard let ids = frame.ids, !ids.isEmpty, ids.count <= RelayLimits.maxAckIds else {
            return FrameError(.invalidField("ack needs 1...\(RelayLimits.maxAckIds) ids"))
        }
        let core = self.core
        let device = self.device
        let logger = self.logger
        accepted()
        core.acks.ack(device.address, ids: ids) { result in
            switch result {
            case .success(let removed):
                core.metrics.acks.increment(by: Int64(removed))
            case .failure(let error):
                logger.error("ack failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                outbox.post(.frame(ServerFrame(type: .error, error: RelayError.internalError.body)))
            }
            done()
        }
        return nil
    }

    private func send(
        _ frame: ClientFrame, outbox: SessionOutbox, accepted: () -> Void, done: @escaping @Sendable () -> Void
    ) -> FrameError? {
        guard let requestId = frame.requestId else {
            return FrameError(.invalidField("send needs requestId"))
        }
        guard let recipient = frame.to, let messages = frame.messages else {
            return FrameError(.invalidField("send needs to and messages"), requestId: requestId)
        }
        let own = frame.ownDeviceMessages ?? []
        for message in messages + own {
            do {
                try InputValidation.checkCiphertext(type: message.type, content: message.content)
            } catch {
                return FrameError(error, requestId: requestId)
            }
        }
        let now = RelayClock.nowMillis()
        let submission = MessageSubmission(
            sender: device, payload: .direct(recipient: recipient, messages: messages, own: own),
            clientTimestamp: frame.clientTimestamp, serverTimestamp: now, expiresAt: core.expiry(from: now))
        let device = self.device
        let logger = self.logger
        accepted()
        MessageRoutes.submit(submission, core: core) { result in
            switch result {
            case .success(let receipt):
                let response = SendMessageResponse(
                    serverTimestamp: receipt.serverTimestamp, queued: receipt.recipients.count, ids: receipt.ids)
                outbox.post(
                    .encoded(FastWire.sendResultFrame(requestId: requestId, response, allocator: SessionOutbox.allocator)))
            case .failure(let error):
                let relayError = error as? RelayError ?? .internalError
                if relayError == .internalError {
                    logger.error("send failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                }
                outbox.post(.frame(ServerFrame(type: .error, error: relayError.body, requestId: requestId)))
            }
            done()
        }
        return nil
    }

    /// Handles one client frame other than `ack` and `send`; returns the error to report, if any. Presence
    /// subscriptions and typing indicators run in a task and report through `asyncOutcome`.
    private func handle(
        _ frame: ClientFrame, outbox: SessionOutbox, asyncOutcome: @escaping @Sendable (FrameError?) -> Void
    ) -> FrameError? {
        switch frame.type {
        case .subscribePresence:
            guard let accounts = frame.accounts, accounts.count <= RelayLimits.maxPresenceSubscriptions else {
                return FrameError(
                    .invalidField("subscribePresence needs at most \(RelayLimits.maxPresenceSubscriptions) accounts"))
            }
            do {
                for account in accounts { try AccountName.validate(account) }
            } catch {
                return FrameError(error)
            }
            let core = self.core
            let device = self.device
            let logger = self.logger
            Task {
                // Presence only of contacts (`RelayStore.areContacts`); the others are left out and named in one
                // `forbidden` error, which is a policy answer, not a refused frame (it does not count towards
                // the disconnect rule).
                let allowed: Set<String>
                do {
                    allowed = try await core.store.contacts(of: device.accountId, among: accounts)
                } catch {
                    logger.error("presence lookup failed", metadata: device.logMetadata(["error": "\(type(of: error))"]))
                    asyncOutcome(FrameError(.internalError))
                    return
                }
                let refused = Set(accounts).subtracting(allowed).sorted()
                for state in await core.presence.subscribe(device.address, to: accounts.filter(allowed.contains)) {
                    outbox.post(.frame(state))
                }
                if !refused.isEmpty {
                    let names = refused.prefix(10).joined(separator: ", ") + (refused.count > 10 ? ", ..." : "")
                    let error = RelayError.forbidden("presence is shown only between contacts; not subscribed: \(names)")
                    outbox.post(.frame(ServerFrame(type: .error, error: error.body)))
                }
                asyncOutcome(nil)
            }
        case .typing:
            Task { asyncOutcome(await forwardTyping(frame, outbox: outbox).map { FrameError($0) }) }
        case .ping:
            outbox.post(.frame(ServerFrame(type: .pong)))
        case .ack, .send:
            return FrameError(.internalError)
        case .message, .queueEmpty, .presence, .error, .pong, .sendResult:
            return FrameError(.invalidField("frame type \(frame.type.rawValue) is not sent by devices"))
        }
        return nil
    }

    /// Typing indicators are ephemeral: forwarded to connected devices only, never queued. To an account only
    /// when it is a contact (`RelayStore.areContacts`): otherwise the sender gets a `forbidden` error frame, a
    /// policy answer that does not count as a refused frame.
    private func forwardTyping(_ frame: ClientFrame, outbox: SessionOutbox) async -> RelayError? {
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
            do {
                guard try await core.store.areContacts(device.accountId, to) else {
                    let error = RelayError.forbidden("typing goes only to contacts")
                    outbox.post(.frame(ServerFrame(type: .error, error: error.body)))
                    return nil
                }
            } catch {
                return .internalError
            }
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
