import Foundation
import HummingbirdWebSocket
import Logging
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
        let (registrationId, events) = await core.hub.register(device)
        let selfAddress = device.address
        await core.presence.deviceConnected(account: device.account)
        try? await core.store.touchDevice(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.increment()
        logger.info("device connected")

        let (wasCurrent, readError) = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await deliver(events: events, outbound: outbound)
            }
            let readError = await read(inbound: inbound)
            // The device went away (or was closed): stop the delivery loop. False if a newer connection took over.
            let wasCurrent = await core.hub.unregister(device, id: registrationId)
            await group.waitForAll()
            return (wasCurrent, readError)
        }

        if wasCurrent { await core.presence.unsubscribe(selfAddress) }
        await core.presence.deviceDisconnected(account: device.account)
        try? await core.store.touchDevice(selfAddress, now: RelayClock.nowMillis())
        core.metrics.connections.decrement()
        logger.info("device disconnected")
        if let readError { throw readError }
    }

    // MARK: delivery

    private func deliver(events: AsyncStream<SessionEvent>, outbound: WebSocketOutboundWriter) async {
        var cursor: Int64 = 0
        var sentQueueEmpty = false
        do {
            try await drain(&cursor, &sentQueueEmpty, outbound)
            for await event in events {
                switch event {
                case .wake:
                    try await drain(&cursor, &sentQueueEmpty, outbound)
                case .frame(let frame):
                    try await send(frame, outbound)
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

    /// Sends every queued envelope after `cursor`, oldest first; after the first full drain, `queueEmpty`.
    private func drain(_ cursor: inout Int64, _ sentQueueEmpty: inout Bool, _ outbound: WebSocketOutboundWriter) async throws {
        while true {
            let page = try await core.store.pending(device.address, afterSeq: cursor, limit: RelayLimits.deliveryPageSize)
            for item in page {
                try await send(ServerFrame(type: .message, envelope: item.envelope), outbound)
                cursor = item.seq
            }
            core.metrics.messagesOut.increment(by: Int64(page.count))
            if page.count < RelayLimits.deliveryPageSize { break }
        }
        if !sentQueueEmpty {
            sentQueueEmpty = true
            try await send(ServerFrame(type: .queueEmpty), outbound)
        }
    }

    private func send(_ frame: ServerFrame, _ outbound: WebSocketOutboundWriter) async throws {
        let data = try WireCoding.encoder().encode(frame)
        try await outbound.write(.text(String(decoding: data, as: UTF8.self)))
    }

    // MARK: reading

    /// Reads device frames until the connection ends; returns the stream's error, if any.
    private func read(inbound: WebSocketInboundStream) async -> (any Error)? {
        var badFrames = 0
        var frameBucket = TokenBucket(
            capacity: core.limits.clientFramesPerSecond * 5, ratePerSecond: core.limits.clientFramesPerSecond)
        do {
            for try await message in inbound.messages(maxSize: RelayLimits.maxClientFrameBytes) {
                let outcome: RelayError?
                if !frameBucket.take() {
                    outcome = .rateLimited
                } else {
                    outcome = await handle(message)
                }
                guard let error = outcome else { continue }
                badFrames += 1
                core.metrics.badFrames.increment()
                await core.hub.send(.frame(ServerFrame(type: .error, error: error.body)), to: device.address)
                if badFrames >= core.limits.maxBadFramesPerConnection {
                    logger.notice("closing connection after repeated bad frames")
                    await core.hub.send(.close(.abuse), to: device.address)
                    return nil
                }
            }
        } catch {
            logger.debug("read loop ended", metadata: ["error": "\(type(of: error))"])
            return error
        }
        return nil
    }

    /// Handles one client frame; returns the error to report, if any.
    private func handle(_ message: WebSocketMessage) async -> RelayError? {
        guard case .text(let text) = message else {
            return .malformedRequest("frames must be JSON text")
        }
        // The inbound stream enforces the limit only on fragmented messages; check single frames here.
        guard text.utf8.count <= RelayLimits.maxClientFrameBytes else {
            return .payloadTooLarge("frame larger than \(RelayLimits.maxClientFrameBytes) bytes")
        }
        let frame: ClientFrame
        do {
            frame = try StrictJSON.decode(ClientFrame.self, from: Data(text.utf8))
        } catch {
            return error
        }
        do {
            switch frame.type {
            case .ack:
                guard let ids = frame.ids, !ids.isEmpty, ids.count <= RelayLimits.maxAckIds else {
                    return .invalidField("ack needs 1...\(RelayLimits.maxAckIds) ids")
                }
                let removed = try await core.acks.ack(device.address, ids: ids)
                core.metrics.acks.increment(by: Int64(removed))
            case .subscribePresence:
                guard let accounts = frame.accounts, accounts.count <= RelayLimits.maxPresenceSubscriptions else {
                    return .invalidField("subscribePresence needs at most \(RelayLimits.maxPresenceSubscriptions) accounts")
                }
                for account in accounts { try AccountName.validate(account) }
                for state in await core.presence.subscribe(device.address, to: accounts) {
                    await core.hub.send(.frame(state), to: device.address)
                }
            case .typing:
                return await forwardTyping(frame)
            case .ping:
                await core.hub.send(.frame(ServerFrame(type: .pong)), to: device.address)
            case .message, .queueEmpty, .presence, .error, .pong:
                return .invalidField("frame type \(frame.type.rawValue) is not sent by devices")
            }
        } catch let error as RelayError {
            return error
        } catch {
            logger.error("frame handling failed", metadata: ["error": "\(type(of: error))"])
            return .internalError
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
