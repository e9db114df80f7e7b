import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// The device's WebSocket: backlog drain, live delivery, acknowledgements after commit,
/// heartbeats, presence and typing, and reconnection with exponential backoff and jitter.
extension ParleyDevice {
    /// Reconnection delays: `base * 2^attempt`, capped, times a random factor in [0.5, 1).
    public struct Backoff: Sendable {
        public var base: Duration = .milliseconds(250)
        public var cap: Duration = .seconds(30)
        public init() {}

        public func delay(attempt: Int, jitter: Double) -> Duration {
            let factor = Double(1 << min(attempt, 16))
            let raw = min(base * factor, cap)
            return raw * (0.5 + 0.5 * min(max(jitter, 0), 1))
        }
    }

    /// Heartbeat period: a `ping` frame every interval; a connection with no frame for three
    /// intervals is closed and re-established.
    static let heartbeat: Duration = .seconds(15)

    /// Stays connected until the task is cancelled: processes every envelope as it comes,
    /// reconnects after a drop, and sends the outbox whenever the relay is reachable.
    public func run(backoff: Backoff = Backoff()) async {
        var attempt = 0
        while !Task.isCancelled && !closed && !removedFromAccount {
            let drained = await connectOnce(stopAfterBacklog: false, timeout: nil)
            if Task.isCancelled || closed || removedFromAccount { break }
            attempt = drained ? 0 : attempt + 1
            let jitter = Double(random.draw(1, purpose: .other)[0]) / 255
            try? await Task.sleep(for: backoff.delay(attempt: attempt, jitter: jitter))
        }
    }

    /// Connects, processes the backlog up to the relay's `queueEmpty` marker, sends the outbox,
    /// and disconnects. Returns whether the backlog was drained within `timeout`. False at once for a device
    /// removed from its account (`removedFromAccount` says so; it is also set when the relay refuses the
    /// connection because this device was removed).
    @discardableResult
    public func syncOnce(timeout: Duration = .seconds(30)) async -> Bool {
        await connectOnce(stopAfterBacklog: true, timeout: timeout)
    }

    /// Closes the current connection, if any.
    public func disconnect() async {
        if let connection {
            self.connection = nil
            await connection.close()
        }
    }

    /// Typing indicator to `peer`'s connected devices (ephemeral, never queued).
    public func setTyping(_ started: Bool, to peer: String) throws {
        try connection?.send(ClientFrame(type: .typing, to: peer, started: started))
    }

    public func setTyping(_ started: Bool, inGroup groupId: String) throws {
        guard let id = UUID(uuidString: groupId) else { throw ClientError.unknownGroup(groupId) }
        try connection?.send(ClientFrame(type: .typing, groupId: id, started: started))
    }

    /// Watches the presence of `accounts` (the contacts by default) on this and later connections.
    public func watchPresence(_ accounts: [String]) throws {
        presenceWatch = accounts
        try connection?.send(ClientFrame(type: .subscribePresence, accounts: accounts))
    }

    // MARK: internals

    private func connectOnce(stopAfterBacklog: Bool, timeout: Duration?) async -> Bool {
        await disconnect()
        guard !removedFromAccount else { return false }
        let connection = RelayConnection.connect(webSocketURL: webSocketURL, credentials: account.credentials)
        self.connection = connection
        lastFrameAt = ContinuousClock.now
        let watch = (presenceWatch ?? ((try? store.contacts().map(\.account)) ?? []).filter { $0 != account.name })
        if !watch.isEmpty, presenceWatch != nil || !stopAfterBacklog {
            try? connection.send(ClientFrame(type: .subscribePresence, accounts: Array(watch.prefix(500))))
        }
        let watchdog = Task { [weak self] in
            let started = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.heartbeat)
                guard let self else { return }
                if let timeout, ContinuousClock.now - started > timeout {
                    await connection.close()
                    return
                }
                if await !self.heartbeat(connection) { return }
            }
        }
        defer { watchdog.cancel() }
        var drained = false
        var announced = false
        for await frame in connection.frames {
            lastFrameAt = ContinuousClock.now
            if !announced {
                announced = true
                emit(.connected)
            }
            switch frame.type {
            case .message:
                guard let envelope = frame.envelope else { continue }
                if await process(envelope) { queueAck(envelope.id, on: connection) }
            case .queueEmpty:
                sendAcks(on: connection)
                drained = true
                emit(.backlogDrained)
                // Superseded chain keys of the backlog's ratchet steps leave the WAL now.
                try? store.scrub()
                await flushOutbox()
                try? await maintainKeys()
                if stopAfterBacklog {
                    // Let the acks and the outbox go out, then close.
                    sendAcks(on: connection)
                    await connection.close()
                }
            case .presence:
                if let name = frame.account { emit(.presence(account: name, online: frame.online ?? false, lastSeen: frame.lastSeen)) }
            case .typing:
                if let name = frame.account {
                    emit(.typing(account: name, deviceId: frame.deviceId ?? 0, groupId: frame.groupId?.uuidString.lowercased(), started: frame.started ?? false))
                }
            case .error:
                logger.warning("relay refused a frame: \(frame.error?.message ?? "?")")
            default:
                break
            }
        }
        // Acks not sent are lost with the connection: the relay sends those envelopes again, and they are
        // recognised as processed.
        if pendingAcks.connection === connection { pendingAcks = (nil, []) }
        if self.connection === connection { self.connection = nil }
        // The stream also ends when this task is cancelled: close the socket then too, or the relay
        // keeps a session nobody reads.
        await connection.close()
        if !announced && !Task.isCancelled && !closed {
            // Refused before the first frame. The WebSocket client does not say why; one authenticated request
            // does: `401` means this device was removed from the account (not an unreachable relay).
            if await Self.refusesAsRemoved(relay) { removedFromAccount = true }
        }
        emit(.disconnected(reason: removedFromAccount ? "this device was removed from the account" : drained ? "closed" : "connection lost"))
        return drained
    }

    /// How long the check after a refused connection may take: a stalled relay must not hold `sync` longer.
    static let removalCheckTimeout: Duration = .seconds(5)

    /// Whether the relay refuses this device's credential (`GET /v1/keys/status` answered `401`), asked once,
    /// for at most `removalCheckTimeout`; anything else (no answer, another error) is false.
    static func refusesAsRemoved(_ relay: RelayClient) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    _ = try await relay.preKeyStatus()
                    return false
                } catch RelayClientError.deviceRemoved {
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: Self.removalCheckTimeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Acknowledges a processed (committed) envelope. Acks go out in batches, one frame per `maxAckBatch`
    /// envelopes or per `ackDelay`, not one frame per envelope: a backlog of hundreds of envelopes (a large
    /// group's delivery receipts) acknowledged one by one exceeds the relay's frame rate per connection
    /// (`clientFramesPerSecond`, 50/s by default), which refuses the frames and closes the connection.
    func queueAck(_ id: UUID, on connection: RelayConnection) {
        if pendingAcks.connection !== connection { pendingAcks = (connection, []) }
        pendingAcks.ids.append(id)
        if pendingAcks.ids.count >= Self.maxAckBatch {
            sendAcks(on: connection)
        } else if !ackTimerRunning {
            ackTimerRunning = true
            Task { [weak self] in
                try? await Task.sleep(for: Self.ackDelay)
                await self?.ackTimerFired()
            }
        }
    }

    private func ackTimerFired() {
        ackTimerRunning = false
        if let connection = pendingAcks.connection { sendAcks(on: connection) }
    }

    /// Sends the acks queued for `connection` (if any) in one frame.
    func sendAcks(on connection: RelayConnection) {
        guard pendingAcks.connection === connection, !pendingAcks.ids.isEmpty else { return }
        let ids = pendingAcks.ids
        pendingAcks.ids = []
        try? connection.ack(ids)
    }

    /// Sends a ping; closes the connection when nothing came for three heartbeats. Returns
    /// false when the connection is gone.
    private func heartbeat(_ connection: RelayConnection) async -> Bool {
        guard self.connection === connection else { return false }
        if ContinuousClock.now - lastFrameAt > Self.heartbeat * 3 {
            await connection.close()
            return false
        }
        try? connection.send(ClientFrame(type: .ping))
        return true
    }
}
