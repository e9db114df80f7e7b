import ParleyWire

/// The device-set check of a send, the same on every backend: a message must address exactly the account's
/// current devices (else 409 `mismatchedDevices`), each once, with their current registration ids (else 410
/// `staleDevices`).
enum DeviceSetCheck {
    /// `expected`: device id → registration id of the devices that must be addressed.
    static func check(_ messages: [OutgoingDeviceMessage], against expected: [UInt32: UInt32], account: String) throws(RelayError) {
        // The common case: exactly the expected devices, each once, with current registration ids.
        if messages.count == expected.count {
            var seen = Set<UInt32>(minimumCapacity: messages.count)
            if messages.allSatisfy({ expected[$0.deviceId] == $0.registrationId && seen.insert($0.deviceId).inserted }) {
                return
            }
        }
        var given: [UInt32: UInt32] = [:]
        for message in messages {
            guard given.updateValue(message.registrationId, forKey: message.deviceId) == nil else {
                throw .invalidField("device \(message.deviceId) addressed twice")
            }
        }
        let missing = Set(expected.keys).subtracting(given.keys).sorted()
        let extra = Set(given.keys).subtracting(expected.keys).sorted()
        if !missing.isEmpty || !extra.isEmpty {
            throw .mismatchedDevices(account: account, missing: missing, extra: extra)
        }
        let stale = given.filter { expected[$0.key] != $0.value }.keys.sorted()
        if !stale.isEmpty { throw .staleDevices(account: account, stale: stale) }
    }
}
