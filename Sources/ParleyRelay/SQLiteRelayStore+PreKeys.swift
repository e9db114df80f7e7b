import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey]
    ) async throws -> Int {
        try await writeChangingLookups { db in
            let device = try Row.fetchOne(
                db, sql: "SELECT state, identity_key FROM device WHERE account_id = ? AND device_id = ?",
                arguments: [address.accountId, Int64(address.deviceId)])
            var state: String?
            var storedIdentity: Data?
            if let device {
                state = device["state"]
                storedIdentity = device["identity_key"]
            }
            if state != "active" {
                // Only a linked device approved with `awaitIdentityUpload` may upload while pending,
                // and only with its identity key: that upload activates it.
                let linkState = try String.fetchOne(
                    db, sql: "SELECT state FROM link_code WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
                guard state == "pending", linkState == "approved", identityKey != nil else { throw RelayError.unauthorized }
            }
            if let signed, let identity = identityKey ?? storedIdentity {
                // Under the identity key in effect after this upload (checked here, against the stored key, in the
                // transaction that stores the signed prekey).
                try InputValidation.check(signed, signedBy: identity)
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
            let count = try Self.countOneTimePreKeys(db, address)
            guard count <= RelayLimits.maxStoredOneTimePreKeys else {
                // Thrown inside the transaction: nothing of this upload is stored.
                throw RelayError.tooManyItems(
                    "at most \(RelayLimits.maxStoredOneTimePreKeys) one-time prekeys stored per device (this upload would leave \(count))")
            }
            return count
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
    /// however many fetches run concurrently (SQLite serializes write transactions). `charge` is called with the
    /// number of device bundles before anything is taken (it throws to refuse the whole fetch); `mayHandOut` is
    /// asked once per device that still has a one-time prekey (false: the bundle goes without one).
    func takePreKeyBundles(
        _ requests: [BundleRequest], charge: @escaping @Sendable (Int) throws -> Void,
        mayHandOut: @escaping @Sendable (DeviceAddress) -> Bool
    ) async throws -> BundleFetchResult {
        try await pool.write { db in
            var found: [(name: String, accountId: Int64, rows: [Row])] = []
            var unknown: [String] = []
            for request in requests {
                guard let accountId = try Self.accountId(db, name: request.account) else {
                    unknown.append(request.account)
                    continue
                }
                var rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT device_id, registration_id, identity_key, signed_prekey_id, signed_prekey,
                                signed_prekey_signature
                            FROM device WHERE account_id = ? AND state = 'active' ORDER BY device_id
                            """),
                    arguments: [accountId])
                if let wanted = request.deviceIds.map({ Set($0) }) {
                    rows.removeAll { !wanted.contains(UInt32(truncatingIfNeeded: $0["device_id"] as Int64)) }
                }
                found.append((request.account, accountId, rows))
            }
            let total = found.reduce(0) { $0 + $1.rows.count }
            if total > 0 { try charge(total) }
            let selectKey = try db.cachedStatement(
                sql: "SELECT key_id, public_key FROM one_time_prekey WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1")
            let deleteKey = try db.cachedStatement(
                sql: "DELETE FROM one_time_prekey WHERE account_id = ? AND device_id = ? AND key_id = ?")
            var responses: [PreKeyBundleResponse] = []
            for (name, accountId, rows) in found {
                var bundles: [DevicePreKeyBundle] = []
                for row in rows {
                    let device: Int64 = row["device_id"]
                    let registrationId: Int64 = row["registration_id"]
                    let signedId: Int64 = row["signed_prekey_id"]
                    var oneTime: OneTimePreKey?
                    let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: device))
                    if let keyRow = try Row.fetchOne(selectKey, arguments: [accountId, device]), mayHandOut(address) {
                        let keyId: Int64 = keyRow["key_id"]
                        oneTime = OneTimePreKey(keyId: UInt32(truncatingIfNeeded: keyId), publicKey: keyRow["public_key"])
                        try deleteKey.execute(arguments: [accountId, device, keyId])
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
                responses.append(PreKeyBundleResponse(account: name, devices: bundles))
            }
            return BundleFetchResult(bundles: responses, unknownAccounts: unknown)
        }
    }
}
