import Foundation
import GRDB
import ParleyWire

/// The history archive of a link (relay-protocol.md §4.5.1): opaque bytes, stored as pieces of at most
/// `RelayLimits.linkHistoryPieceBytes` in `link_history_piece`, described by one `link_history` row per link.
extension SQLiteRelayStore {
    func beginLinkHistory(_ uploader: DeviceAddress, code: String, now: Int64, maxBytes: Int, maxAccountBytes: Int) async throws -> Int {
        let codeHash = Credentials.hash(code)
        return try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT code_hash, state, expires_at, creator_device_id FROM link_code
                        WHERE code_hash = ? AND account_id = ?
                        """,
                    arguments: [codeHash, uploader.accountId]),
                Self.sameCode(row, codeHash)
            else { throw RelayError.notFound("unknown link code") }
            let creator: Int64 = row["creator_device_id"]
            guard creator == Int64(uploader.deviceId) else {
                throw RelayError.forbidden("only the device that created the link uploads its history")
            }
            let state: String = row["state"]
            let expiresAt: Int64 = row["expires_at"]
            guard state == "claimed", expiresAt >= now else { throw RelayError.linkCodeUnavailable }
            try Self.dropLinkHistory(db, codeHash)
            let others =
                try Int.fetchOne(
                    db, sql: "SELECT COALESCE(SUM(bytes), 0) FROM link_history WHERE account_id = ?", arguments: [uploader.accountId]) ?? 0
            let allowance = min(maxBytes, maxAccountBytes - others)
            guard allowance > 0 else {
                throw RelayError.payloadTooLarge("the account's history archives already take \(others) of \(maxAccountBytes) bytes")
            }
            try db.execute(
                sql: "INSERT INTO link_history (code_hash, account_id, bytes, pieces, complete, created_at) VALUES (?, ?, 0, 0, 0, ?)",
                arguments: [codeHash, uploader.accountId, now])
            return allowance
        }
    }

    func appendLinkHistory(code: String, seq: Int, data: Data) async throws {
        let codeHash = Credentials.hash(code)
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE link_history SET bytes = bytes + ?, pieces = pieces + 1 WHERE code_hash = ? AND complete = 0 AND pieces = ?",
                arguments: [data.count, codeHash, seq])
            // Swept (the link expired) or replaced by a newer upload of the same link meanwhile.
            guard db.changesCount == 1 else { throw RelayError.linkCodeUnavailable }
            try db.execute(
                sql: "INSERT INTO link_history_piece (code_hash, seq, data) VALUES (?, ?, ?)", arguments: [codeHash, seq, data])
        }
    }

    func finishLinkHistory(code: String, now: Int64) async throws {
        let codeHash = Credentials.hash(code)
        try await pool.write { db in
            let claimed =
                try Bool.fetchOne(
                    db, sql: "SELECT 1 FROM link_code WHERE code_hash = ? AND state = 'claimed' AND expires_at >= ?",
                    arguments: [codeHash, now]) ?? false
            guard claimed else { throw RelayError.linkCodeUnavailable }
            try db.execute(sql: "UPDATE link_history SET complete = 1 WHERE code_hash = ? AND complete = 0", arguments: [codeHash])
            guard db.changesCount == 1 else { throw RelayError.linkCodeUnavailable }
        }
    }

    func abortLinkHistory(code: String) async throws {
        let codeHash = Credentials.hash(code)
        _ = try await pool.write { db in try Self.dropLinkHistory(db, codeHash) }
    }

    func linkHistory(_ device: DeviceAddress) async throws -> LinkHistoryInfo {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT h.code_hash, h.bytes, h.pieces FROM link_code l JOIN link_history h ON h.code_hash = l.code_hash
                        WHERE l.account_id = ? AND l.device_id = ? AND h.complete = 1
                        """,
                    arguments: [device.accountId, Int64(device.deviceId)])
            else { throw RelayError.notFound("no history archive for this device") }
            return LinkHistoryInfo(key: row["code_hash"], bytes: row["bytes"], pieces: row["pieces"])
        }
    }

    func linkHistoryPiece(_ key: Data, seq: Int) async throws -> Data? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT data FROM link_history_piece WHERE code_hash = ? AND seq = ?", arguments: [key, seq])
        }
    }

    func deleteLinkHistory(_ device: DeviceAddress) async throws -> Bool {
        try await pool.write { db in
            guard
                let codeHash = try Data.fetchOne(
                    db, sql: "SELECT code_hash FROM link_code WHERE account_id = ? AND device_id = ?",
                    arguments: [device.accountId, Int64(device.deviceId)])
            else { return false }
            return try Self.dropLinkHistory(db, codeHash)
        }
    }

    @discardableResult
    static func dropLinkHistory(_ db: Database, _ codeHash: Data) throws -> Bool {
        try db.execute(sql: "DELETE FROM link_history_piece WHERE code_hash = ?", arguments: [codeHash])
        try db.execute(sql: "DELETE FROM link_history WHERE code_hash = ?", arguments: [codeHash])
        return db.changesCount > 0
    }

    /// Archives whose link is gone, expired unclaimed or unapproved, or approved more than
    /// `RelayLimits.linkHistoryKeepSeconds` past its expiry (part of every link sweep).
    static func deleteStaleLinkHistory(_ db: Database, now: Int64) throws {
        try db.execute(
            sql: """
                DELETE FROM link_history WHERE NOT EXISTS (
                    SELECT 1 FROM link_code l WHERE l.code_hash = link_history.code_hash
                    AND ((l.state = 'claimed' AND l.expires_at >= ?) OR (l.state = 'approved' AND l.expires_at >= ?)))
                """,
            arguments: [now, now - RelayLimits.linkHistoryKeepSeconds * 1000])
        try db.execute(
            sql: """
                DELETE FROM link_history_piece WHERE NOT EXISTS (
                    SELECT 1 FROM link_history h WHERE h.code_hash = link_history_piece.code_hash)
                """)
    }
}
