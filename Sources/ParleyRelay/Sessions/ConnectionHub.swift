import ParleyWire

/// The live WebSocket sessions of this node, one per device: a newer connection of the same device replaces the
/// older, also when the older one is on another node of the deployment (through the `RelayCluster`).
actor ConnectionHub {
    /// Each device's current session, by the outbox its events go to (one reference per connection).
    private var sessions: [DeviceAddress: SessionOutbox] = [:]
    private var byAccount: [String: Set<DeviceAddress>] = [:]
    /// The id under which each current session is registered with the cluster.
    private var connections: [DeviceAddress: (device: AuthenticatedDevice, id: UInt64)] = [:]
    /// Set by `closeAll` (graceful shutdown): later sessions are closed as they register.
    private var closing = false
    private let cluster: any RelayCluster

    init(cluster: any RelayCluster = SingleNode()) {
        self.cluster = cluster
    }

    /// Registers a session's outbox; a previous session of the same device (on this node or another) is told to
    /// close and takes no more events. Returns once the cluster knows where the device is.
    func register(_ device: AuthenticatedDevice, _ outbox: SessionOutbox) async {
        if closing {
            // Connected while the relay shuts down: closed at once, like the sessions `closeAll` found.
            outbox.post(.close(.shutdown))
            outbox.finish()
            return
        }
        if let previous = sessions[device.address] {
            // At once, whatever the old connection still has to write (its envelopes stay queued).
            previous.abort(.superseded)
        }
        sessions[device.address] = outbox
        byAccount[device.account, default: []].insert(device.address)
        guard !cluster.isSingleNode else { return }
        let connection = UInt64.random(in: 1...UInt64.max)
        connections[device.address] = (device, connection)
        do {
            try await cluster.deviceConnected(device, connection: connection)
        } catch {
            // Other nodes could not be told where the device is: it would miss what they commit for it.
            if sessions[device.address] === outbox {
                outbox.post(.close(.unavailable))
                outbox.finish()
            }
        }
    }

    /// Removes a session if it is still the current one of its device. Returns whether it was.
    @discardableResult
    func unregister(_ device: AuthenticatedDevice, _ outbox: SessionOutbox) async -> Bool {
        guard let current = sessions[device.address], current === outbox else { return false }
        current.finish()
        sessions[device.address] = nil
        byAccount[device.account]?.remove(device.address)
        if byAccount[device.account]?.isEmpty == true { byAccount[device.account] = nil }
        if let registered = connections.removeValue(forKey: device.address) {
            try? await cluster.deviceDisconnected(device, connection: registered.id)
        }
        return true
    }

    // MARK: from other nodes

    /// A newer session of the device registered on another node: closes this node's session if it is the one
    /// registered as `connection`. Returns whether it was.
    @discardableResult
    func supersede(_ address: DeviceAddress, connection: UInt64) -> Bool {
        guard let registered = connections[address], registered.id == connection, let session = sessions[address]
        else { return false }
        session.post(.close(.superseded))
        session.finish()
        sessions[address] = nil
        connections[address] = nil
        byAccount[registered.device.account]?.remove(address)
        if byAccount[registered.device.account]?.isEmpty == true { byAccount[registered.device.account] = nil }
        return true
    }

    /// Closes the device's session on this node, if it has one (asked by another node).
    func closeLocally(_ address: DeviceAddress, _ reason: CloseReason) {
        sessions[address]?.post(.close(reason))
    }

    /// Envelopes committed on another node: handed to the sessions of their devices. Returns the devices
    /// without a session here.
    func deliverRemote(_ deliveries: [Delivery]) -> [DeviceAddress] {
        deliver(deliveries)
    }

    /// Every session reads its queue (after notifications from other nodes may have been missed).
    func wakeAll() {
        for session in sessions.values { session.post(.wake) }
    }

    /// Sends a frame to the connected devices of accounts on this node only (forwarded by another node).
    func sendLocally(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress?) {
        for address in byAccount[account] ?? [] where address != except {
            sessions[address]?.post(.frame(frame))
        }
    }

    /// The sessions registered with the cluster (to register them again after this node's lease was lost).
    func registeredConnections() -> [(device: AuthenticatedDevice, id: UInt64)] {
        Array(connections.values)
    }

    /// Wakes the sessions of these devices; returns the devices that have none (offline).
    @discardableResult
    func wake(_ addresses: [DeviceAddress]) -> [DeviceAddress] {
        var offline: [DeviceAddress] = []
        for address in addresses {
            if let session = sessions[address] {
                session.post(.wake)
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
                session.post(.envelope(delivery.queued))
            } else if seenOffline.insert(delivery.address).inserted {
                offline.append(delivery.address)
            }
        }
        return offline
    }

    /// Posts an event to the device's session on this node. A device-removed close also reaches a session on
    /// another node.
    func send(_ event: SessionEvent, to address: DeviceAddress) {
        if let session = sessions[address] {
            session.post(event)
        } else if case .close(let reason) = event, reason == .deviceRemoved {
            cluster.forwardClose(reason, to: address)
        }
    }

    /// Ends the session of `account`'s device at once, whatever its outbox holds (see `SessionOutbox.abort`).
    func end(_ address: DeviceAddress, of account: String, reason: CloseReason) {
        guard let outbox = sessions.removeValue(forKey: address) else { return }
        outbox.abort(reason)
        byAccount[account]?.remove(address)
        if byAccount[account]?.isEmpty == true { byAccount[account] = nil }
    }

    /// Sends a frame to every connected device of an account (on every node), optionally except one.
    func send(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress? = nil) {
        sendLocally(frame, toAccount: account, except: except)
        cluster.forward(frame, toAccount: account, except: except)
    }

    func connectedDevices(of account: String) -> Int {
        byAccount[account]?.count ?? 0
    }

    var count: Int { sessions.count }

    /// Bytes the device's current session holds for its socket (see `SessionOutbox.heldBytes`); nil when it
    /// has none.
    func heldBytes(of address: DeviceAddress) async -> Int? {
        guard let outbox = sessions[address] else { return nil }
        return await outbox.heldBytes()
    }

    /// Asks every session to close (graceful shutdown).
    func closeAll() {
        closing = true
        for outbox in sessions.values {
            outbox.post(.close(.shutdown))
            outbox.finish()
        }
        sessions.removeAll()
        byAccount.removeAll()
        connections.removeAll()
    }
}
