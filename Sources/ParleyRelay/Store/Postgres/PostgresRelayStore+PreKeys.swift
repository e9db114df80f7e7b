import Foundation
import NIOConcurrencyHelpers
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey],
        kyberLastResort: KyberPreKey?, kyberOneTime: [KyberPreKey], kyberSignedBy: Data?
    ) async throws -> PreKeyCounts {
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
            let identityAfter = identityKey ?? storedIdentity
            if let signed, let identity = identityAfter {
                // Under the identity key in effect after this upload (checked against the stored key with the
                // device row locked, in the transaction that stores the signed prekey).
                try InputValidation.check(signed, signedBy: identity)
            }
            if kyberLastResort != nil || !kyberOneTime.isEmpty {
                // The caller verified the Kyber signatures under `kyberSignedBy`; it must still be the identity key in
                // effect after this upload (the device row is locked: no identity upload runs concurrently).
                guard let kyberSignedBy, kyberSignedBy == identityAfter else {
                    throw RelayError.invalidField("the Kyber prekeys are signed by another identity key than the device's")
                }
            }
            if let identityKey {
                // The old one-time prekeys and every Kyber prekey belong to (are signed by) the old identity: drop them.
                try await rows(connection, "DELETE FROM one_time_prekey WHERE account_id = \(accountId) AND device_id = \(deviceId)")
                try await rows(connection, "DELETE FROM kyber_prekey WHERE account_id = \(accountId) AND device_id = \(deviceId)")
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
            try await insertKyberPreKeys(connection, address, lastResort: kyberLastResort, oneTime: kyberOneTime)
            let counts = try await preKeyCounts(connection, address)
            // Thrown inside the transaction: it rolls back, nothing of this upload is stored.
            guard counts.oneTime <= RelayLimits.maxStoredOneTimePreKeys else {
                throw RelayError.tooManyItems(
                    "at most \(RelayLimits.maxStoredOneTimePreKeys) one-time prekeys stored per device (this upload would leave \(counts.oneTime))")
            }
            guard counts.kyberOneTime <= RelayLimits.maxStoredKyberOneTimePreKeys else {
                throw RelayError.tooManyItems(
                    "at most \(RelayLimits.maxStoredKyberOneTimePreKeys) one-time Kyber prekeys stored per device (this upload would leave \(counts.kyberOneTime))")
            }
            return counts
        }
    }

    func preKeyCounts(_ address: DeviceAddress) async throws -> PreKeyCounts {
        try await read { [self] connection in try await preKeyCounts(connection, address) }
    }

    func identityKey(_ address: DeviceAddress) async throws -> Data? {
        try await read { [self] connection in
            try await rows(
                connection,
                "SELECT identity_key FROM device WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))"
            ).first?.decode(Data.self)
        }
    }

    func preKeyCounts(_ connection: PostgresConnection, _ address: DeviceAddress) async throws -> PreKeyCounts {
        let oneTime = try await countOneTimePreKeys(connection, address)
        let kyber = try await rows(
            connection,
            """
            SELECT COUNT(*) FILTER (WHERE NOT last_resort), COUNT(*) FILTER (WHERE last_resort)
            FROM kyber_prekey WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))
            """
        ).first?.decode((Int64, Int64).self)
        return PreKeyCounts(oneTime: oneTime, kyberOneTime: Int(kyber?.0 ?? 0), hasKyberLastResort: (kyber?.1 ?? 0) > 0)
    }

    /// Replaces the last-resort Kyber prekey (at most one per device) and adds one-time ones (same id replaces; a
    /// one-time key with the id of the device's last-resort key is refused: it would replace it), as on SQLite.
    /// The caller holds the device row's lock, so uploads of one device do not interleave.
    func insertKyberPreKeys(
        _ connection: PostgresConnection, _ address: DeviceAddress, lastResort: KyberPreKey?, oneTime: [KyberPreKey]
    ) async throws {
        let accountId = address.accountId
        let deviceId = Int64(address.deviceId)
        if let lastResort {
            try await rows(
                connection,
                """
                DELETE FROM kyber_prekey WHERE account_id = \(accountId) AND device_id = \(deviceId)
                    AND (last_resort OR key_id = \(Int64(lastResort.keyId)))
                """)
            try await rows(
                connection,
                """
                INSERT INTO kyber_prekey (account_id, device_id, key_id, public_key, signature, last_resort)
                VALUES (\(accountId), \(deviceId), \(Int64(lastResort.keyId)), \(lastResort.publicKey), \(lastResort.signature), TRUE)
                """)
        }
        guard !oneTime.isEmpty else { return }
        // One statement cannot update a row twice: the last key of a repeated id wins (the routes refuse repeated
        // ids before this; the store keeps SQLite's semantics anyway).
        var byId: [UInt32: KyberPreKey] = [:]
        for key in oneTime { byId[key.keyId] = key }
        let ids = byId.keys.sorted().map { Int64($0) }
        if let clash = try await rows(
            connection,
            """
            SELECT key_id FROM kyber_prekey WHERE account_id = \(accountId) AND device_id = \(deviceId) AND last_resort
                AND key_id = ANY(\(ids))
            """
        ).first?.decode(Int64.self) {
            throw RelayError.invalidField("Kyber prekey id \(clash) is the last-resort key's")
        }
        let sorted = byId.keys.sorted()
        let publicKeys = sorted.map { ByteBuffer(bytes: byId[$0]?.publicKey ?? Data()) }
        let signatures = sorted.map { ByteBuffer(bytes: byId[$0]?.signature ?? Data()) }
        try await rows(
            connection,
            """
            INSERT INTO kyber_prekey (account_id, device_id, key_id, public_key, signature, last_resort)
            SELECT \(accountId), \(deviceId), k, p, s, FALSE FROM unnest(\(ids), \(publicKeys), \(signatures)) AS t(k, p, s)
            ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature
            """)
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
    /// `mayHandOut` is asked once per device that still has a one-time prekey, EC or Kyber (false: its bundle goes without
    /// a one-time EC prekey and with the last-resort Kyber prekey). One-time Kyber prekeys are taken the same way
    /// (lowest id first, `SKIP LOCKED`); a device without one left gets its last-resort Kyber prekey, which is kept.
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
                    // Whether a one-time key (EC or Kyber) is left is asked first (without taking it), so `mayHandOut`
                    // is charged only for a device that has one, as on SQLite.
                    let left = try await rows(
                        connection,
                        """
                        SELECT EXISTS (SELECT 1 FROM one_time_prekey WHERE account_id = \(accountId) AND device_id = \(device)),
                               EXISTS (SELECT 1 FROM kyber_prekey WHERE account_id = \(accountId) AND device_id = \(device)
                                       AND NOT last_resort)
                        """
                    ).first?.decode((Bool, Bool).self) ?? (false, false)
                    let handOut = (left.0 || left.1) && mayHandOut(address)
                    var oneTime: OneTimePreKey?
                    if handOut, left.0, let taken = try await rows(
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
                    // A one-time Kyber prekey is taken like the EC one (at most once, whatever runs concurrently);
                    // none left, or over the hand-out budget: the last-resort key, which stays.
                    var kyberRow: PostgresRow?
                    if handOut, left.1 {
                        kyberRow = try await rows(
                            connection,
                            """
                            DELETE FROM kyber_prekey WHERE (account_id, device_id, key_id) = (
                                SELECT account_id, device_id, key_id FROM kyber_prekey
                                WHERE account_id = \(accountId) AND device_id = \(device) AND NOT last_resort
                                ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                            RETURNING key_id, public_key, signature
                            """
                        ).first
                    }
                    if kyberRow == nil {
                        kyberRow = try await rows(
                            connection,
                            """
                            SELECT key_id, public_key, signature FROM kyber_prekey
                            WHERE account_id = \(accountId) AND device_id = \(device) AND last_resort
                            """
                        ).first
                    }
                    var kyber: KyberPreKey?
                    if let kyberRow {
                        let (keyId, publicKey, kyberSignature) = try kyberRow.decode((Int64, Data, Data).self)
                        kyber = KyberPreKey(keyId: UInt32(truncatingIfNeeded: keyId), publicKey: publicKey, signature: kyberSignature)
                    }
                    bundles.append(
                        DevicePreKeyBundle(
                            deviceId: UInt32(truncatingIfNeeded: device), registrationId: UInt32(truncatingIfNeeded: registrationId),
                            identityKey: identityKey,
                            signedPreKey: SignedPreKey(
                                keyId: UInt32(truncatingIfNeeded: signedId), publicKey: signedKey, signature: signature),
                            oneTimePreKey: oneTime, kyberPreKey: kyber))
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
