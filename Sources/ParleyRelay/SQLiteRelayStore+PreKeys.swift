import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey]
    ) async throws -> Int {
        try await writeChangingLookups { db in
            let state = try String.fetchOne(
                db, sql: "SELECT state FROM device WHERE account_id = ? AND device_id = ?",
                arguments: [address.accountId, Int64(address.deviceId)])
            if state != "active" {
                // Only a linked device approved with `awaitIdentityUpload` may upload while pending,
                // and only with its identity key: that upload activates it.
                let linkState = try String.fetchOne(
                    db, sql: "SELECT state FROM link_code WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
                guard state == "pending", linkState == "approved", identityKey != nil else { throw RelayError.unauthorized }
            }
            if let identityKey {
                // The old one-time prekeys belong to the old identity: drop them.
                try db.execute(
                    sql: "DELETE FROM one_time_prekey WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
                try db.execute(
                    sql: "UPDATE device SET identity_key = ?, state = 'active' WHERE account_id = ? AND device_id = ?",
                    arguments: [identityKey, address.accountId, Int64(address.deviceId)])
            }
            if let signed {
                try db.execute(
                    sql: """
                        UPDATE device SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ?
                        WHERE account_id = ? AND device_id = ?
                        """,
                    arguments: [
                        Int64(signed.keyId), signed.publicKey, signed.signature, address.accountId,
                        Int64(address.deviceId),
                    ])
            }
            try Self.insertOneTimePreKeys(db, address, oneTime)
            return try Self.countOneTimePreKeys(db, address)
        }
    }

    func oneTimePreKeyCount(_ address: DeviceAddress) async throws -> Int {
        try await pool.read { db in try Self.countOneTimePreKeys(db, address) }
    }

    static func countOneTimePreKeys(_ db: Database, _ address: DeviceAddress) throws -> Int {
        try Int.fetchOne(
            db, sql: "SELECT COUNT(*) FROM one_time_prekey WHERE account_id = ? AND device_id = ?",
            arguments: [address.accountId, Int64(address.deviceId)]) ?? 0
    }

    /// Select and delete in the same write transaction: a one-time prekey is handed out at most once,
    /// however many fetches run concurrently (SQLite serializes write transactions).
    func takePreKeyBundles(account: String, deviceId: UInt32?) async throws -> [DevicePreKeyBundle] {
        try await writeChangingLookups { db in
            let accountId = try Self.requireAccountId(db, name: account)
            var sql = """
                SELECT device_id, registration_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature
                FROM device WHERE account_id = ? AND state = 'active'
                """
            var arguments: StatementArguments = [accountId]
            if let deviceId {
                sql += " AND device_id = ?"
                arguments += [Int64(deviceId)]
            }
            sql += " ORDER BY device_id"
            let rows = try Row.fetchAll(db, sql: sql, arguments: arguments)
            if rows.isEmpty { throw RelayError.notFound("unknown device") }
            var bundles: [DevicePreKeyBundle] = []
            for row in rows {
                let device: Int64 = row["device_id"]
                let registrationId: Int64 = row["registration_id"]
                let signedId: Int64 = row["signed_prekey_id"]
                var oneTime: OneTimePreKey?
                if let keyRow = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT key_id, public_key FROM one_time_prekey WHERE account_id = ? AND device_id = ?
                        ORDER BY key_id LIMIT 1
                        """,
                    arguments: [accountId, device])
                {
                    let keyId: Int64 = keyRow["key_id"]
                    oneTime = OneTimePreKey(keyId: UInt32(truncatingIfNeeded: keyId), publicKey: keyRow["public_key"])
                    try db.execute(
                        sql: "DELETE FROM one_time_prekey WHERE account_id = ? AND device_id = ? AND key_id = ?",
                        arguments: [accountId, device, keyId])
                }
                bundles.append(
                    DevicePreKeyBundle(
                        deviceId: UInt32(truncatingIfNeeded: device),
                        registrationId: UInt32(truncatingIfNeeded: registrationId),
                        identityKey: row["identity_key"],
                        signedPreKey: SignedPreKey(
                            keyId: UInt32(truncatingIfNeeded: signedId), publicKey: row["signed_prekey"],
                            signature: row["signed_prekey_signature"]),
                        oneTimePreKey: oneTime))
            }
            return bundles
        }
    }
}
