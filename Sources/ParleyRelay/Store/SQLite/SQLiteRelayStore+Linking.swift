import Foundation
import GRDB
import ParleyWire

extension SQLiteRelayStore {
    func createLinkCode(_ creator: DeviceAddress, code: String, now: Int64, expiresAt: Int64) async throws {
        try await writeChangingLookups { db in
            try Self.deleteStaleLinks(db, now: now)
            try db.execute(
                sql: """
                    INSERT INTO link_code (code_hash, account_id, creator_device_id, state, created_at, expires_at)
                    VALUES (?, ?, ?, 'open', ?, ?)
                    """,
                arguments: [Credentials.hash(code), creator.accountId, Int64(creator.deviceId), now, expiresAt])
        }
    }

    func claimLinkCode(
        code: String, device: NewDeviceKeys, credentialHash: Data, now: Int64, maxDevices: Int
    ) async throws -> (String, UInt32) {
        let codeHash = Credentials.hash(code)
        return try await writeChangingLookups { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT l.code_hash, l.account_id, l.state, l.expires_at, a.name, a.next_device_id
                        FROM link_code l JOIN account a ON a.id = l.account_id WHERE l.code_hash = ?
                        """,
                    arguments: [codeHash]),
                Self.sameCode(row, codeHash)
            else { throw RelayError.notFound("unknown link code") }
            let state: String = row["state"]
            let expiresAt: Int64 = row["expires_at"]
            guard state == "open", expiresAt >= now else { throw RelayError.linkCodeUnavailable }
            let accountId: Int64 = row["account_id"]
            let deviceCount =
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM device WHERE account_id = ?", arguments: [accountId]) ?? 0
            guard deviceCount < maxDevices else { throw RelayError.tooManyDevices }
            let nextId: Int64 = row["next_device_id"]
            guard let deviceId = UInt32(exactly: nextId) else { throw RelayError.tooManyDevices }
            try db.execute(
                sql: "UPDATE account SET next_device_id = next_device_id + 1 WHERE id = ?", arguments: [accountId])
            try Self.insertDevice(
                db, accountId: accountId, deviceId: deviceId, state: "pending", keys: device,
                credentialHash: credentialHash, now: now)
            try db.execute(
                sql: "UPDATE link_code SET state = 'claimed', device_id = ? WHERE code_hash = ?", arguments: [nextId, codeHash])
            let name: String = row["name"]
            return (name, deviceId)
        }
    }

    func linkInfo(accountId: Int64, code: String, now: Int64) async throws -> LinkClaimInfo {
        let codeHash = Credentials.hash(code)
        return try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT l.code_hash, l.state, l.device_id, d.registration_id, d.identity_key, d.name
                        FROM link_code l LEFT JOIN device d ON d.account_id = l.account_id AND d.device_id = l.device_id
                        WHERE l.code_hash = ? AND l.account_id = ?
                        """,
                    arguments: [codeHash, accountId]),
                Self.sameCode(row, codeHash)
            else { throw RelayError.notFound("unknown link code") }
            let state: String = row["state"]
            let deviceId: Int64? = row["device_id"]
            let registrationId: Int64? = row["registration_id"]
            return LinkClaimInfo(
                code: code, state: LinkState(rawValue: state) ?? .open,
                deviceId: deviceId.map { UInt32(truncatingIfNeeded: $0) },
                registrationId: registrationId.map { UInt32(truncatingIfNeeded: $0) },
                identityKey: row["identity_key"], name: row["name"])
        }
    }

    func approveLink(
        accountId: Int64, code: String, provisioningBlob: Data, awaitIdentityUpload: Bool, now: Int64
    ) async throws {
        let codeHash = Credentials.hash(code)
        try await writeChangingLookups { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT code_hash, state, device_id, expires_at FROM link_code WHERE code_hash = ? AND account_id = ?",
                    arguments: [codeHash, accountId]),
                Self.sameCode(row, codeHash)
            else { throw RelayError.notFound("unknown link code") }
            let state: String = row["state"]
            let expiresAt: Int64 = row["expires_at"]
            guard state == "claimed", expiresAt >= now, let deviceId: Int64 = row["device_id"] else {
                throw RelayError.linkCodeUnavailable
            }
            try db.execute(
                sql: "UPDATE link_code SET state = 'approved', provisioning_blob = ? WHERE code_hash = ?",
                arguments: [provisioningBlob, codeHash])
            // Awaiting its identity upload, the device stays pending: not listed, no bundle, no fan-out.
            if !awaitIdentityUpload {
                try db.execute(
                    sql: "UPDATE device SET state = 'active' WHERE account_id = ? AND device_id = ?",
                    arguments: [accountId, deviceId])
            }
        }
    }

    /// Link codes are stored as SHA-256 hashes (like device credentials) and found by that hash; the stored hash
    /// is then compared with the presented code's in constant time. A timing difference of the index lookup
    /// could only tell an attacker about the hash of a code it guessed, not about a stored code.
    static func sameCode(_ row: Row, _ codeHash: Data) -> Bool {
        let stored: Data = row["code_hash"]
        return Credentials.sameHash(stored, codeHash)
    }

    /// Open or claimed codes past expiry go, with the pending devices they created; approved codes
    /// stay one day longer for the new device's status polling.
    static func deleteStaleLinks(_ db: Database, now: Int64) throws {
        // Approved but never uploaded its identity: goes with its code.
        try db.execute(
            sql: """
                DELETE FROM device WHERE state = 'pending' AND EXISTS (
                    SELECT 1 FROM link_code l WHERE l.account_id = device.account_id AND l.device_id = device.device_id
                    AND l.state = 'approved' AND l.expires_at < ?)
                """,
            arguments: [now - 24 * 3600 * 1000])
        try db.execute(
            sql: """
                DELETE FROM device WHERE state = 'pending' AND EXISTS (
                    SELECT 1 FROM link_code l WHERE l.account_id = device.account_id AND l.device_id = device.device_id
                    AND l.state = 'claimed' AND l.expires_at < ?)
                """,
            arguments: [now])
        try db.execute(
            sql: "DELETE FROM link_code WHERE (state IN ('open', 'claimed') AND expires_at < ?) OR expires_at < ?",
            arguments: [now, now - 24 * 3600 * 1000])
        try deleteStaleLinkHistory(db, now: now)
    }

    func linkStatus(_ address: DeviceAddress) async throws -> LinkStatusResponse {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT state, provisioning_blob FROM link_code WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
            else { throw RelayError.notFound("device was not linked with a code") }
            let state: String = row["state"]
            return LinkStatusResponse(state: LinkState(rawValue: state) ?? .claimed, provisioningBlob: row["provisioning_blob"])
        }
    }
}
