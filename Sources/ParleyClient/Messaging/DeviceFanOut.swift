import ParleyCrypto
import ParleyProtocol

/// One ciphertext for one device of an account, as the relay expects them.
public struct DeviceCiphertext: Sendable, Equatable {
    public let deviceId: UInt32
    /// The registration id of the session it was encrypted under (the relay compares it with the
    /// device's current one and answers "stale" on a difference).
    public let registrationId: UInt32
    /// 3 = PreKeySignalMessage, 2 = SignalMessage.
    public let type: Int
    public let body: [UInt8]
}

/// Encrypts one plaintext once per device of an account, setting up the sessions that are
/// missing from prekey bundles first, and repairs sessions after the relay reports a device list
/// that does not match. Transport-agnostic: the caller fetches bundles and sends.
public struct DeviceFanOut: Sendable {
    public init() {}

    /// Ciphertexts for `deviceIds` of `account` (excluding none: the caller passes the list the
    /// relay expects, e.g. all of a recipient's devices, or the sender's own other devices).
    /// `fetchBundles` is called once, with the devices that have no session yet.
    /// Runs in one store transaction: if anything fails, no session is created or advanced.
    public func encrypt(
        _ plaintext: [UInt8], for account: String, deviceIds: [UInt32], store: DeviceStore,
        random: any RandomSource = SystemRandom.shared,
        fetchBundles: ([UInt32]) throws -> [PreKeyBundle]
    ) throws -> [DeviceCiphertext] {
        try store.transaction { store in
            let targets = Array(Set(deviceIds)).sorted()
            let missing = try targets.filter { id in
                try store.loadSession(for: ProtocolAddress(name: account, deviceId: id))?.hasCurrentSession != true
            }
            if !missing.isEmpty {
                let bundles = try fetchBundles(missing)
                let policy = try store.sessionPolicy()
                for id in missing {
                    guard let bundle = bundles.first(where: { $0.deviceId == id }) else {
                        throw FanOutError.noBundle(account: account, deviceId: id)
                    }
                    try SessionBuilder.process(bundle: bundle, for: ProtocolAddress(name: account, deviceId: id), store: store, policy: policy, random: random)
                }
            }
            return try targets.map { id in
                let address = ProtocolAddress(name: account, deviceId: id)
                let message = try SessionCipher.encrypt(plaintext, for: address, store: store)
                let registrationId = try store.loadSession(for: address)?.remoteRegistrationId ?? 0
                return DeviceCiphertext(deviceId: id, registrationId: registrationId, type: message.type, body: message.serialized)
            }
        }
    }

    /// After the relay refused a send: devices it called extra (removed) lose their sessions;
    /// devices it called stale (reinstalled, new registration id) have their session archived, so
    /// the next `encrypt` sets up a fresh one from a new bundle. Missing devices need nothing:
    /// the next `encrypt` includes them.
    public func repair(account: String, extra: [UInt32], stale: [UInt32], store: DeviceStore) throws {
        try store.transaction { store in
            for id in extra { try store.deleteSession(for: ProtocolAddress(name: account, deviceId: id)) }
            for id in stale {
                let address = ProtocolAddress(name: account, deviceId: id)
                guard var record = try store.loadSession(for: address) else { continue }
                record.archiveCurrentState()
                try store.storeSession(record, for: address)
            }
        }
    }
}

/// Why a fan-out could not be prepared.
public enum FanOutError: Error, Equatable, Sendable {
    /// The directory returned no bundle for a device that needs a new session.
    case noBundle(account: String, deviceId: UInt32)
}
