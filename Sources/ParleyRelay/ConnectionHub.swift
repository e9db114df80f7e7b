import ParleyWire

/// The live WebSocket sessions, one per device: a newer connection of the same device replaces the older.
actor ConnectionHub {
    /// Each device's current session, by the outbox its events go to (one reference per connection).
    private var sessions: [DeviceAddress: SessionOutbox] = [:]
    private var byAccount: [String: Set<DeviceAddress>] = [:]
    /// Set by `closeAll` (graceful shutdown): later sessions are closed as they register.
    private var closing = false

    /// Registers a session's outbox; a previous session of the same device is told to close and takes no more
    /// events.
    func register(_ device: AuthenticatedDevice, _ outbox: SessionOutbox) {
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
    }

    /// Removes a session if it is still the current one of its device. Returns whether it was.
    @discardableResult
    func unregister(_ device: AuthenticatedDevice, _ outbox: SessionOutbox) -> Bool {
        guard let current = sessions[device.address], current === outbox else { return false }
        current.finish()
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

    func send(_ event: SessionEvent, to address: DeviceAddress) {
        sessions[address]?.post(event)
    }

    /// Ends the session of `account`'s device at once, whatever its outbox holds (see `SessionOutbox.abort`).
    func end(_ address: DeviceAddress, of account: String, reason: CloseReason) {
        guard let outbox = sessions.removeValue(forKey: address) else { return }
        outbox.abort(reason)
        byAccount[account]?.remove(address)
        if byAccount[account]?.isEmpty == true { byAccount[account] = nil }
    }

    /// Sends a frame to every connected device of an account, optionally except one.
    func send(_ frame: ServerFrame, toAccount account: String, except: DeviceAddress? = nil) {
        for address in byAccount[account] ?? [] where address != except {
            sessions[address]?.post(.frame(frame))
        }
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
    }
}
