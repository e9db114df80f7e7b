import Foundation
import ParleyWire
import PostgresNIO

/// The history archive of a link (relay-protocol.md §4.5.1), as in the SQLite store: pieces in
/// `link_history_piece`, one `link_history` row per link. Every node reads and writes the same tables, so the
/// download may reach another node than the upload.
extension PostgresRelayStore {
    func beginLinkHistory(_ uploader: DeviceAddress, code: String, now: Int64, maxBytes: Int, maxAccountBytes: Int) async throws -> Int {
        let codeHash = Credentials.hash(code)
        return try await transaction { [self] connection in
            // The code's row is locked: two uploads of one link take turns (the second replaces the first).
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT code_hash, state, expires_at, creator_device_id FROM link_code
                    WHERE code_hash = \(codeHash) AND account_id = \(uploader.accountId) FOR UPDATE
                    """
                ).first
            else { throw RelayError.notFound("unknown link code") }
            let (storedHash, state, expiresAt, creator) = try row.decode((Data, String, Int64, Int64).self)
            guard Credentials.sameHash(storedHash, codeHash) else { throw RelayError.notFound("unknown link code") }
            guard creator == Int64(uploader.deviceId) else {
                throw RelayError.forbidden("only the device that created the link uploads its history")
            }
            guard state == "claimed", expiresAt >= now else { throw RelayError.linkCodeUnavailable }
            try await dropLinkHistory(connection, codeHash)
            let others =
                try await rows(
                    connection, "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM link_history WHERE account_id = \(uploader.accountId)"
                ).first?.decode(Int64.self) ?? 0
            let allowance = min(maxBytes, maxAccountBytes - Int(others))
            guard allowance > 0 else {
                throw RelayError.payloadTooLarge("the account's history archives already take \(others) of \(maxAccountBytes) bytes")
            }
            try await rows(
                connection,
                """
                INSERT INTO link_history (code_hash, account_id, bytes, pieces, complete, created_at)
                VALUES (\(codeHash), \(uploader.accountId), 0, 0, FALSE, \(now))
                """)
            return allowance
        }
    }

    func appendLinkHistory(code: String, seq: Int, data: Data) async throws {
        let codeHash = Credentials.hash(code)
        let size = Int64(data.count)
        let expected = Int64(seq)
        try await transaction { [self] connection in
            let updated = try await rows(
                connection,
                """
                UPDATE link_history SET bytes = bytes + \(size), pieces = pieces + 1
                WHERE code_hash = \(codeHash) AND NOT complete AND pieces = \(expected) RETURNING pieces
                """)
            // Swept (the link expired) or replaced by a newer upload of the same link meanwhile.
            guard updated.count == 1 else { throw RelayError.linkCodeUnavailable }
            try await rows(
                connection, "INSERT INTO link_history_piece (code_hash, seq, data) VALUES (\(codeHash), \(expected), \(data))")
        }
    }

    func finishLinkHistory(code: String, now: Int64) async throws {
        let codeHash = Credentials.hash(code)
        try await transaction { [self] connection in
            let claimed = try await rows(
                connection,
                "SELECT 1 FROM link_code WHERE code_hash = \(codeHash) AND state = 'claimed' AND expires_at >= \(now) FOR SHARE")
            guard !claimed.isEmpty else { throw RelayError.linkCodeUnavailable }
            let updated = try await rows(
                connection, "UPDATE link_history SET complete = TRUE WHERE code_hash = \(codeHash) AND NOT complete RETURNING pieces")
            guard updated.count == 1 else { throw RelayError.linkCodeUnavailable }
        }
    }

    func abortLinkHistory(code: String) async throws {
        let codeHash = Credentials.hash(code)
        try await transaction { [self] connection in try await dropLinkHistory(connection, codeHash) }
    }

    func linkHistory(_ device: DeviceAddress) async throws -> LinkHistoryInfo {
        try await read { [self] connection in
            guard
                let row = try await rows(
                    connection,
                    """
                    SELECT h.code_hash, h.bytes, h.pieces FROM link_code l JOIN link_history h ON h.code_hash = l.code_hash
                    WHERE l.account_id = \(device.accountId) AND l.device_id = \(Int64(device.deviceId)) AND h.complete
                    """
                ).first
            else { throw RelayError.notFound("no history archive for this device") }
            let (key, bytes, pieces) = try row.decode((Data, Int64, Int64).self)
            return LinkHistoryInfo(key: key, bytes: Int(bytes), pieces: Int(pieces))
        }
    }

    func linkHistoryPiece(_ key: Data, seq: Int) async throws -> Data? {
        let index = Int64(seq)
        return try await read { [self] connection in
            try await rows(connection, "SELECT data FROM link_history_piece WHERE code_hash = \(key) AND seq = \(index)")
                .first?.decode(Data.self)
        }
    }

    func deleteLinkHistory(_ device: DeviceAddress) async throws -> Bool {
        try await transaction { [self] connection in
            guard
                let codeHash = try await rows(
                    connection,
                    "SELECT code_hash FROM link_code WHERE account_id = \(device.accountId) AND device_id = \(Int64(device.deviceId))"
                ).first?.decode(Data.self)
            else { return false }
            return try await dropLinkHistory(connection, codeHash)
        }
    }

    @discardableResult
    func dropLinkHistory(_ connection: PostgresConnection, _ codeHash: Data) async throws -> Bool {
        try await rows(connection, "DELETE FROM link_history_piece WHERE code_hash = \(codeHash)")
        return !(try await rows(connection, "DELETE FROM link_history WHERE code_hash = \(codeHash) RETURNING pieces")).isEmpty
    }

    /// Archives whose link is gone, expired unapproved, or approved more than `RelayLimits.linkHistoryKeepSeconds`
    /// past its expiry (part of every link sweep).
    func deleteStaleLinkHistory(_ connection: PostgresConnection, now: Int64) async throws {
        let keepUntil = now - RelayLimits.linkHistoryKeepSeconds * 1000
        try await rows(
            connection,
            """
            DELETE FROM link_history h WHERE NOT EXISTS (
                SELECT 1 FROM link_code l WHERE l.code_hash = h.code_hash
                AND ((l.state = 'claimed' AND l.expires_at >= \(now)) OR (l.state = 'approved' AND l.expires_at >= \(keepUntil))))
            """)
        try await rows(
            connection,
            "DELETE FROM link_history_piece p WHERE NOT EXISTS (SELECT 1 FROM link_history h WHERE h.code_hash = p.code_hash)")
    }
}
