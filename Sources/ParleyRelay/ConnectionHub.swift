import Foundation
import ParleyWire

/// The live WebSocket sessions, one per device: a newer connection of the same device replaces the older.
actor ConnectionHub {
    struct Registration: Sendable {
        let id: UUID
        let account: String
        let continuation: AsyncStream<SessionEvent>.Continuation
    }

    private var sessions: [DeviceAddress: Registration] = [:]
    private var byAccount: [String: Set<DeviceAddress>] = [:]

    /// Registers a session; returns its id, event stream, and the stream's continuation (the session may
    /// queue its own frames on it without going through the hub).
    func register(_ device: AuthenticatedDevice) -> (UUID, AsyncStream<SessionEvent>, AsyncStream<SessionEvent>.Continuation) {
        let (stream, continuation) = AsyncStream<SessionEvent>.makeStream()
        let id = UUID()
        if let previous = sessions[device.address] {
            previous.continuation.yield(.close(.superseded))
            previous.continuation.finish()
        }
        sessions[device.address] = Registration(id: id, account: device.account, continuation: continuation)
        byAccount[device.account, default: []].insert(device.address)
        return (id, stream, continuation)
    }

    /// Removes a session if it is still the current one of its device. Returns whether it was.
    @discardableResult
    func unregister(_ device: AuthenticatedDevice, id: UUID) -> Bool {
        guard let current = sessions[device.address], current.id == id else { return false }
        current.continuation.finish()
        sessions[device.address] = nil
        byAccount[device.account]?.remove(device.address)
        if byAccount[device.account]?.isEmpty == true { byAccount[device.account] = nil }
        return true
    }

    /// Wakes the sessions of these devices; returns the devices that have none (offline).
    @discardableResult
    func wake(_ addresses: [DeviceAddress]) -> [DeviceAddress] {
        var offline: [DeviceAddress] = []
        for address in addresses {
            if let session = sessions[address] {
                session.continuation.yield(.wake)
            } else {
                offline.append(address)
            }
        }
        return offline
    }

    /// Hands just-committed envelopes to the sessions of their devices; returns the devices that have
    /// none (offline), each once.
    func deliver(_ deliveries: [Delivery]) -> [DeviceAddress] {
        var offline: [DeviceAddress] = []
        var seenOffline = Set<DeviceAddress>()
        for delivery in deliveries {
            if let session = sessions[delivery.address] {
                session.continuation.yield(.envelope(delivery.queued))
            } else if seenOffline.insert(delivery.address).inserted {
                offline.append(delivery.address)
            }
        }
        return offline
    }

    func send(_ event: SessionEvent, to address: DeviceAddress) {
        sessions[address]?.continuation.yield(event)
    }

    /// Sends a frame to every connected device of an account, optionally except one.
    func send(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress? = nil) {
        for address in byAccount[account] ?? [] where address != except {
            sessions[address]?.continuation.yield(.frame(frame))
        }
    }

    func connectedDevices(of account: String) -> Int {
        byAccount[account]?.count ?? 0
    }

    var count: Int { sessions.count }

    /// Asks every session to close (graceful shutdown).
    func closeAll() {
        for registration in sessions.values {
            registration.continuation.yield(.close(.shutdown))
            registration.continuation.finish()
        }
        sessions.removeAll()
        byAccount.removeAll()
    }
}
