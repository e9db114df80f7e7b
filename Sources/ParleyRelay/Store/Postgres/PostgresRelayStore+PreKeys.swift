import Foundation
import NIOConcurrencyHelpers
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey]
    ) async throws -> Int {
        let accountId = address.accountId
        let deviceId = Int64(address.deviceId)
        return try await transaction { [self] connection in
            var state: String?
            var storedIdentity: Data?
            if let row = try await rows(
                connection,
                "SELECT state, identity_key FROM device WHERE account_id = \(accountId) AND device_id = \(deviceId) FOR NO KEY UPDATE"
            ).first {
                (state, storedIdentity) = try row.decode((String, Data).self)
            }
            if state != "active" {
                // Only a linked device approved with `awaitIdentityUpload` may upload while pending,
                // and only with its identity key: that upload activates it.
                let linkState = try await rows(
                    connection, "SELECT state FROM link_code WHERE account_id = \(accountId) AND device_id = \(deviceId)"
                ).first?.decode(String.self)
                guard state == "pending", linkState == "approved", identityKey != nil else { throw RelayError.unauthorized }
            }
            if let signed, let identity = identityKey ?? storedIdentity {
                // Under the identity key in effect after this upload (checked against the stored key with the
                // device row locked, in the transaction that stores the signed prekey).
                try InputValidation.check(signed, signedBy: identity)
            }
            if let identityKey {
                // The old one-time prekeys belong to the old identity: drop them.
                try await rows(connection, "DELETE FROM one_time_prekey WHERE account_id = \(accountId) AND device_id = \(deviceId)")
                try await rows(
                    connection,
                    """
                    UPDATE device SET identity_key = \(identityKey), state = 'active'
                    WHERE account_id = \(accountId) AND device_id = \(deviceId)
                    """)
            }
            if let signed {
                try await rows(
                    connection,
                    """
                    UPDATE device SET signed_prekey_id = \(Int64(signed.keyId)), signed_prekey = \(signed.publicKey),
                        signed_prekey_signature = \(signed.signature)
                    WHERE account_id = \(accountId) AND device_id = \(deviceId)
                    """)
            }
            try await insertOneTimePreKeys(connection, address, oneTime)
            let count = try await countOneTimePreKeys(connection, address)
            guard count <= RelayLimits.maxStoredOneTimePreKeys else {
                // Thrown inside the transaction: it rolls back, nothing of this upload is stored.
                throw RelayError.tooManyItems(
                    "at most \(RelayLimits.maxStoredOneTimePreKeys) one-time prekeys stored per device (this upload would leave \(count))")
            }
            return count
        }
    }

    func oneTimePreKeyCount(_ address: DeviceAddress) async throws -> Int {
        try await read { [self] connection in try await countOneTimePreKeys(connection, address) }
    }

    func countOneTimePreKeys(_ connection: PostgresConnection, _ address: DeviceAddress) async throws -> Int {
        Int(
            try await rows(
                connection,
                """
                SELECT COUNT(*) FROM one_time_prekey WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))
                """
            ).first?.decode(Int64.self) ?? 0)
    }

    /// Bundles of the requested devices in one transaction. Each one-time prekey is taken with `DELETE ...
    /// RETURNING` on the lowest key id that no concurrent fetch holds (`FOR UPDATE SKIP LOCKED`): two fetches at
    /// the same instant, on one node or two, get different keys, and a key is handed out at most once. `charge`
    /// runs with the number of device bundles before anything is taken (it throws to refuse the whole fetch);
    /// `mayHandOut` is asked once per device that still has a one-time prekey (false: its bundle goes without one).
    ///
    /// A fetch PostgreSQL aborted (deadlock, serialization failure) runs again inside `transaction`, but the request
    /// is charged once: a retry charges only bundles beyond those already charged (none, unless devices were added
    /// meanwhile), and reuses each device's hand-out decision instead of asking `mayHandOut` again.
    func takePreKeyBundles(
        _ requests: [BundleRequest], charge: @escaping @Sendable (Int) throws -> Void,
        mayHandOut: @escaping @Sendable (DeviceAddress) -> Bool
    ) async throws -> BundleFetchResult {
        let charges = ChargeOnce(charge: charge, mayHandOut: mayHandOut)
        return try await transaction { [self] connection in
            let charge = charges.charge
            let mayHandOut = charges.mayHandOut
            var accountIds: [String: Int64] = [:]
            let names = Array(Set(requests.map(\.account)))
            for row in try await rows(connection, "SELECT name, id FROM account WHERE name = ANY(\(names))") {
                let (name, id) = try row.decode((String, Int64).self)
                accountIds[name] = id
            }
            var found: [(name: String, accountId: Int64, rows: [PostgresRow])] = []
            var unknown: [String] = []
            for request in requests {
                guard let accountId = accountIds[request.account] else {
                    unknown.append(request.account)
                    continue
                }
                var devices = try await rows(
                    connection,
                    """
                    SELECT device_id, registration_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature
                    FROM device WHERE account_id = \(accountId) AND state = 'active' ORDER BY device_id
                    """)
                if let wanted = request.deviceIds.map({ Set($0) }) {
                    devices = try devices.filter { row in
                        wanted.contains(UInt32(truncatingIfNeeded: try row.decode((Int64, Int64, Data, Int64, Data, Data).self).0))
                    }
                }
                found.append((request.account, accountId, devices))
            }
            let total = found.reduce(0) { $0 + $1.rows.count }
            if total > 0 { try charge(total) }
            var responses: [PreKeyBundleResponse] = []
            for (name, accountId, devices) in found {
                var bundles: [DevicePreKeyBundle] = []
                for row in devices {
                    let (device, registrationId, identityKey, signedId, signedKey, signature) =
                        try row.decode((Int64, Int64, Data, Int64, Data, Data).self)
                    let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: device))
                    var oneTime: OneTimePreKey?
                    // Whether a key is left is asked first (without taking it), so `mayHandOut` is charged only for
                    // a device that has one, as on SQLite.
                    let hasKey = try await !rows(
                        connection,
                        "SELECT 1 FROM one_time_prekey WHERE account_id = \(accountId) AND device_id = \(device) LIMIT 1"
                    ).isEmpty
                    if hasKey, mayHandOut(address), let taken = try await rows(
                        connection,
                        """
                        DELETE FROM one_time_prekey WHERE (account_id, device_id, key_id) = (
                            SELECT account_id, device_id, key_id FROM one_time_prekey
                            WHERE account_id = \(accountId) AND device_id = \(device)
                            ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                        RETURNING key_id, public_key
                        """
                    ).first {
                        let (keyId, publicKey) = try taken.decode((Int64, Data).self)
                        oneTime = OneTimePreKey(keyId: UInt32(truncatingIfNeeded: keyId), publicKey: publicKey)
                    }
                    bundles.append(
                        DevicePreKeyBundle(
                            deviceId: UInt32(truncatingIfNeeded: device), registrationId: UInt32(truncatingIfNeeded: registrationId),
                            identityKey: identityKey,
                            signedPreKey: SignedPreKey(
                                keyId: UInt32(truncatingIfNeeded: signedId), publicKey: signedKey, signature: signature),
                            oneTimePreKey: oneTime))
                }
                responses.append(PreKeyBundleResponse(account: name, devices: bundles))
            }
            return BundleFetchResult(bundles: responses, unknownAccounts: unknown)
        }
    }
}

/// The charges of one bundle fetch across the attempts of its transaction: bundles are charged once, and each
/// device's hand-out decision is taken once.
private final class ChargeOnce: Sendable {
    private let chargeRequester: @Sendable (Int) throws -> Void
    private let askHandOut: @Sendable (DeviceAddress) -> Bool
    private let state = NIOLockedValueBox(State())

    private struct State {
        var charged = 0
        var handOut: [DeviceAddress: Bool] = [:]
    }

    init(charge: @escaping @Sendable (Int) throws -> Void, mayHandOut: @escaping @Sendable (DeviceAddress) -> Bool) {
        chargeRequester = charge
        askHandOut = mayHandOut
    }

    /// Charges the bundles of this attempt that an earlier attempt did not (all of them the first time).
    var charge: @Sendable (Int) throws -> Void {
        { [self] count in
            let charged = state.withLockedValue { $0.charged }
            guard count > charged else { return }
            try chargeRequester(count - charged)
            state.withLockedValue { $0.charged = count }
        }
    }

    /// The device's hand-out decision, asked of the limiter on the first attempt only.
    var mayHandOut: @Sendable (DeviceAddress) -> Bool {
        { [self] address in
            if let decided = state.withLockedValue({ $0.handOut[address] }) { return decided }
            let allowed = askHandOut(address)
            state.withLockedValue { $0.handOut[address] = allowed }
            return allowed
        }
    }
}
