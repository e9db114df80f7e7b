import Foundation
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey]
    ) async throws -> Int {
        let accountId = address.accountId
        let deviceId = Int64(address.deviceId)
        return try await transaction { [self] connection in
            let state = try await rows(
                connection,
                "SELECT state FROM device WHERE account_id = \(accountId) AND device_id = \(deviceId) FOR NO KEY UPDATE"
            ).first?.decode(String.self)
            if state != "active" {
                // Only a linked device approved with `awaitIdentityUpload` may upload while pending,
                // and only with its identity key: that upload activates it.
                let linkState = try await rows(
                    connection, "SELECT state FROM link_code WHERE account_id = \(accountId) AND device_id = \(deviceId)"
                ).first?.decode(String.self)
                guard state == "pending", linkState == "approved", identityKey != nil else { throw RelayError.unauthorized }
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
            return try await countOneTimePreKeys(connection, address)
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

    /// Each one-time prekey is taken with `DELETE ... RETURNING` on the lowest key id that no concurrent fetch
    /// holds (`FOR UPDATE SKIP LOCKED`): two fetches at the same instant, on one node or two, get different keys,
    /// and a key is handed out at most once.
    func takePreKeyBundles(account: String, deviceId: UInt32?) async throws -> [DevicePreKeyBundle] {
        try await transaction { [self] connection in
            let accountId = try await requireAccountId(connection, name: account)
            let deviceFilter = deviceId.map(Int64.init)
            let devices = try await rows(
                connection,
                """
                SELECT device_id, registration_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature
                FROM device WHERE account_id = \(accountId) AND state = 'active'
                    AND (\(deviceFilter)::BIGINT IS NULL OR device_id = \(deviceFilter))
                ORDER BY device_id
                """)
            if devices.isEmpty { throw RelayError.notFound("unknown device") }
            var bundles: [DevicePreKeyBundle] = []
            for row in devices {
                let (device, registrationId, identityKey, signedId, signedKey, signature) =
                    try row.decode((Int64, Int64, Data, Int64, Data, Data).self)
                var oneTime: OneTimePreKey?
                if let taken = try await rows(
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
                        signedPreKey: SignedPreKey(keyId: UInt32(truncatingIfNeeded: signedId), publicKey: signedKey, signature: signature),
                        oneTimePreKey: oneTime))
            }
            return bundles
        }
    }
}
