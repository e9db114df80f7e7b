import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey],
        kyberLastResort: KyberPreKey?, kyberOneTime: [KyberPreKey], kyberSignedBy: Data?
    ) async throws -> PreKeyCounts {
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
            let identityAfter = identityKey ?? storedIdentity
            if let signed, let identity = identityAfter {
                // Under the identity key in effect after this upload (checked here, against the stored key, in the
                // transaction that stores the signed prekey).
                try InputValidation.check(signed, signedBy: identity)
            }
            if kyberLastResort != nil || !kyberOneTime.isEmpty {
                // The caller verified the Kyber signatures under `kyberSignedBy`; it must still be the identity key
                // in effect after this upload (a concurrent identity upload would otherwise slip keys signed by the
                // old identity in beside the new one).
                guard let kyberSignedBy, kyberSignedBy == identityAfter else {
                    throw RelayError.invalidField("the Kyber prekeys are signed by another identity key than the device's")
                }
            }
            if let identityKey {
                // The old one-time prekeys and every Kyber prekey belong to (are signed by) the old identity: drop them.
                try db.execute(
                    sql: "DELETE FROM one_time_prekey WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
                try db.execute(
                    sql: "DELETE FROM kyber_prekey WHERE account_id = ? AND device_id = ?",
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
            try Self.insertKyberPreKeys(db, address, lastResort: kyberLastResort, oneTime: kyberOneTime)
            let counts = try Self.preKeyCounts(db, address)
            // Thrown inside the transaction: nothing of this upload is stored.
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
        try await pool.read { db in try Self.preKeyCounts(db, address) }
    }

    func identityKey(_ address: DeviceAddress) async throws -> Data? {
        try await pool.read { db in
            try Data.fetchOne(
                db, sql: "SELECT identity_key FROM device WHERE account_id = ? AND device_id = ?",
                arguments: [address.accountId, Int64(address.deviceId)])
        }
    }

    static func preKeyCounts(_ db: Database, _ address: DeviceAddress) throws -> PreKeyCounts {
        let oneTime = try Int.fetchOne(
            db, sql: "SELECT COUNT(*) FROM one_time_prekey WHERE account_id = ? AND device_id = ?",
            arguments: [address.accountId, Int64(address.deviceId)]) ?? 0
        let kyber = try Row.fetchOne(
            db,
            sql: """
                SELECT COALESCE(SUM(last_resort = 0), 0) AS one_time, COALESCE(SUM(last_resort = 1), 0) AS last_resort
                FROM kyber_prekey WHERE account_id = ? AND device_id = ?
                """,
            arguments: [address.accountId, Int64(address.deviceId)])
        let kyberOneTime: Int = kyber?["one_time"] ?? 0
        let lastResort: Int = kyber?["last_resort"] ?? 0
        return PreKeyCounts(oneTime: oneTime, kyberOneTime: kyberOneTime, hasKyberLastResort: lastResort > 0)
    }

    /// Replaces the last-resort Kyber prekey (at most one per device) and adds one-time ones (a one-time key with
    /// the id of the device's last-resort key is refused: it would replace it).
    static func insertKyberPreKeys(_ db: Database, _ address: DeviceAddress, lastResort: KyberPreKey?, oneTime: [KyberPreKey]) throws {
        if let lastResort {
            try db.execute(
                sql: "DELETE FROM kyber_prekey WHERE account_id = ? AND device_id = ? AND (last_resort = 1 OR key_id = ?)",
                arguments: [address.accountId, Int64(address.deviceId), Int64(lastResort.keyId)])
            try db.execute(
                sql: """
                    INSERT INTO kyber_prekey (account_id, device_id, key_id, public_key, signature, last_resort)
                    VALUES (?, ?, ?, ?, ?, 1)
                    """,
                arguments: [address.accountId, Int64(address.deviceId), Int64(lastResort.keyId), lastResort.publicKey, lastResort.signature])
        }
        for key in oneTime {
            let existing = try Bool.fetchOne(
                db, sql: "SELECT last_resort FROM kyber_prekey WHERE account_id = ? AND device_id = ? AND key_id = ?",
                arguments: [address.accountId, Int64(address.deviceId), Int64(key.keyId)])
            if existing == true { throw RelayError.invalidField("Kyber prekey id \(key.keyId) is the last-resort key's") }
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO kyber_prekey (account_id, device_id, key_id, public_key, signature, last_resort)
                    VALUES (?, ?, ?, ?, ?, 0)
                    """,
                arguments: [address.accountId, Int64(address.deviceId), Int64(key.keyId), key.publicKey, key.signature])
        }
    }

    /// Select and delete in the same write transaction: a one-time prekey (EC or Kyber) is handed out at most once,
    /// however many fetches run concurrently (SQLite serializes write transactions). `charge` is called with the
    /// number of device bundles before anything is taken (it throws to refuse the whole fetch); `mayHandOut` is
    /// asked once per device that still has a one-time prekey, EC or Kyber (false: the bundle goes without a
    /// one-time EC prekey, and with the last-resort Kyber prekey).
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
            // One-time Kyber prekeys (lowest id first), then the last-resort one.
            let selectKyber = try db.cachedStatement(
                sql: """
                    SELECT key_id, public_key, signature, last_resort FROM kyber_prekey
                    WHERE account_id = ? AND device_id = ? AND last_resort >= ? ORDER BY last_resort, key_id LIMIT 1
                    """)
            let deleteKyber = try db.cachedStatement(
                sql: "DELETE FROM kyber_prekey WHERE account_id = ? AND device_id = ? AND key_id = ? AND last_resort = 0")
            var responses: [PreKeyBundleResponse] = []
            for (name, accountId, rows) in found {
                var bundles: [DevicePreKeyBundle] = []
                for row in rows {
                    let device: Int64 = row["device_id"]
                    let registrationId: Int64 = row["registration_id"]
                    let signedId: Int64 = row["signed_prekey_id"]
                    let address = DeviceAddress(accountId: accountId, deviceId: UInt32(truncatingIfNeeded: device))
                    let ecRow = try Row.fetchOne(selectKey, arguments: [accountId, device])
                    var kyberRow = try Row.fetchOne(selectKyber, arguments: [accountId, device, 0])
                    let hasOneTime = ecRow != nil || (kyberRow.map { ($0["last_resort"] as Bool) == false } ?? false)
                    let handOut = hasOneTime && mayHandOut(address)
                    var oneTime: OneTimePreKey?
                    if let ecRow, handOut {
                        let keyId: Int64 = ecRow["key_id"]
                        oneTime = OneTimePreKey(keyId: UInt32(truncatingIfNeeded: keyId), publicKey: ecRow["public_key"])
                        try deleteKey.execute(arguments: [accountId, device, keyId])
                    }
                    if let row = kyberRow, (row["last_resort"] as Bool) == false, !handOut {
                        // Over the hand-out budget: the last-resort key instead (nil if the device has none).
                        kyberRow = try Row.fetchOne(selectKyber, arguments: [accountId, device, 1])
                    }
                    var kyber: KyberPreKey?
                    if let kyberRow {
                        let keyId: Int64 = kyberRow["key_id"]
                        kyber = KyberPreKey(
                            keyId: UInt32(truncatingIfNeeded: keyId), publicKey: kyberRow["public_key"],
                            signature: kyberRow["signature"])
                        try deleteKyber.execute(arguments: [accountId, device, keyId])
                    }
                    bundles.append(
                        DevicePreKeyBundle(
                            deviceId: UInt32(truncatingIfNeeded: device),
                            registrationId: UInt32(truncatingIfNeeded: registrationId),
                            identityKey: row["identity_key"],
                            signedPreKey: SignedPreKey(
                                keyId: UInt32(truncatingIfNeeded: signedId), publicKey: row["signed_prekey"],
                                signature: row["signed_prekey_signature"]),
                            oneTimePreKey: oneTime, kyberPreKey: kyber))
                }
                responses.append(PreKeyBundleResponse(account: name, devices: bundles))
            }
            return BundleFetchResult(bundles: responses, unknownAccounts: unknown)
        }
    }
}
