import Foundation
import ParleyWire
import PostgresNIO

extension PostgresRelayStore {
    func createLinkCode(_ creator: DeviceAddress, code: String, now: Int64, expiresAt: Int64) async throws {
        try await transaction { [self] connection in
            try await deleteStaleLinks(connection, now: now)
            try await rows(
                connection,
                """
                INSERT INTO link_code (code_hash, account_id, creator_device_id, state, created_at, expires_at)
                VALUES (\(Credentials.hash(code)), \(creator.accountId), \(Int64(creator.deviceId)), 'open', \(now), \(expiresAt))
                """)
        }
    }

    func claimLinkCode(
        code: String, device: NewDeviceKeys, credentialHash: Data, now: Int64, maxDevices: Int
    ) async throws -> (String, UInt32) {
        let codeHash = Credentials.hash(code)
        return try await transaction { [self] connection in
            // The code's row and its account's row are locked: two claims of one code, or two links of one account
            // at once, take turns (one device id each, the device limit counted once).
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT l.code_hash, l.account_id, l.state, l.expires_at, a.name, a.next_device_id
                    FROM link_code l JOIN account a ON a.id = l.account_id WHERE l.code_hash = \(codeHash) FOR UPDATE
                    """
                ).first
            else { throw RelayError.notFound("unknown link code") }
            let (storedHash, accountId, state, expiresAt, name, nextId) =
                try row.decode((Data, Int64, String, Int64, String, Int64).self)
            guard Credentials.sameHash(storedHash, codeHash) else { throw RelayError.notFound("unknown link code") }
            guard state == "open", expiresAt >= now else { throw RelayError.linkCodeUnavailable }
            let deviceCount = try await rows(connection, "SELECT COUNT(*) FROM device WHERE account_id = \(accountId)")
                .first?.decode(Int64.self) ?? 0
            guard deviceCount < maxDevices else { throw RelayError.tooManyDevices }
            guard let deviceId = UInt32(exactly: nextId) else { throw RelayError.tooManyDevices }
            try await rows(connection, "UPDATE account SET next_device_id = next_device_id + 1 WHERE id = \(accountId)")
            try await insertDevice(
                connection, accountId: accountId, deviceId: deviceId, state: "pending", keys: device,
                credentialHash: credentialHash, now: now)
            try await rows(connection, "UPDATE link_code SET state = 'claimed', device_id = \(nextId) WHERE code_hash = \(codeHash)")
            return (name, deviceId)
        }
    }

    func linkInfo(accountId: Int64, code: String, now: Int64) async throws -> LinkClaimInfo {
        let codeHash = Credentials.hash(code)
        return try await read { [self] connection in
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT l.code_hash, l.state, l.device_id, d.registration_id, d.identity_key, d.name
                    FROM link_code l LEFT JOIN device d ON d.account_id = l.account_id AND d.device_id = l.device_id
                    WHERE l.code_hash = \(codeHash) AND l.account_id = \(accountId)
                    """
                ).first
            else { throw RelayError.notFound("unknown link code") }
            let (storedHash, state, deviceId, registrationId, identityKey, name) =
                try row.decode((Data, String, Int64?, Int64?, Data?, String?).self)
            guard Credentials.sameHash(storedHash, codeHash) else { throw RelayError.notFound("unknown link code") }
            return LinkClaimInfo(
                code: code, state: LinkState(rawValue: state) ?? .open, deviceId: deviceId.map { UInt32(truncatingIfNeeded: $0) },
                registrationId: registrationId.map { UInt32(truncatingIfNeeded: $0) }, identityKey: identityKey, name: name)
        }
    }

    func approveLink(
        accountId: Int64, code: String, provisioningBlob: Data, awaitIdentityUpload: Bool, now: Int64
    ) async throws {
        let codeHash = Credentials.hash(code)
        try await transaction { [self] connection in
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT code_hash, state, device_id, expires_at FROM link_code
                    WHERE code_hash = \(codeHash) AND account_id = \(accountId) FOR UPDATE
                    """
                ).first
            else { throw RelayError.notFound("unknown link code") }
            let (storedHash, state, deviceId, expiresAt) = try row.decode((Data, String, Int64?, Int64).self)
            guard Credentials.sameHash(storedHash, codeHash) else { throw RelayError.notFound("unknown link code") }
            guard state == "claimed", expiresAt >= now, let deviceId else { throw RelayError.linkCodeUnavailable }
            try await rows(
                connection, "UPDATE link_code SET state = 'approved', provisioning_blob = \(provisioningBlob) WHERE code_hash = \(codeHash)")
            // Awaiting its identity upload, the device stays pending: not listed, no bundle, no fan-out.
            if !awaitIdentityUpload {
                try await rows(
                    connection, "UPDATE device SET state = 'active' WHERE account_id = \(accountId) AND device_id = \(deviceId)")
            }
        }
    }

    /// Open or claimed codes past expiry go, with the pending devices they created; approved codes stay one day
    /// longer for the new device's status polling (as in the SQLite store).
    func deleteStaleLinks(_ connection: PostgresConnection, now: Int64) async throws {
        let day: Int64 = 24 * 3600 * 1000
        try await rows(
            connection,
            """
            DELETE FROM device d WHERE d.state = 'pending' AND EXISTS (
                SELECT 1 FROM link_code l WHERE l.account_id = d.account_id AND l.device_id = d.device_id
                AND ((l.state = 'approved' AND l.expires_at < \(now - day)) OR (l.state = 'claimed' AND l.expires_at < \(now))))
            """)
        try await rows(
            connection,
            "DELETE FROM link_code WHERE (state IN ('open', 'claimed') AND expires_at < \(now)) OR expires_at < \(now - day)")
        try await deleteStaleLinkHistory(connection, now: now)
    }

    func linkStatus(_ address: DeviceAddress) async throws -> LinkStatusResponse {
        try await read { [self] connection in
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT state, provisioning_blob FROM link_code
                    WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))
                    """
                ).first
            else { throw RelayError.notFound("device was not linked with a code") }
            let (state, blob) = try row.decode((String, Data?).self)
            return LinkStatusResponse(state: LinkState(rawValue: state) ?? .claimed, provisioningBlob: blob)
        }
    }
}
