import Foundation
import GRDB

/// One thing this device sent, kept so that it can answer a decryption-error report about it.
public struct ResendLogEntry: Sendable, Equatable {
    /// The envelope's client timestamp (unique per sending device: `nextSendTimestamps`).
    public let timestamp: Int64
    /// Where it went: an account (and this account's other devices), or a group.
    public let destination: OutboxDestination
    /// Group messages and sender-key distributions: the group.
    public let groupId: String?
    /// Group messages: the group version the relay accepted it for (its recipients are that
    /// version's members).
    public let groupEpoch: Int64?
    /// The padded content for the recipients; nil when it is never resent (sender keys, reports).
    public let content: [UInt8]?
    /// 1:1: the padded transcript for this account's other devices.
    public let ownContent: [UInt8]?
    public let loggedAt: Int64
}

extension SealContext {
    static func resendLog(_ timestamp: Int64, own: Bool) -> SealContext {
        SealContext(table: "resend_log", key: [String(timestamp), own ? "own" : "peer"])
    }
}

/// The resend log (`resend_log`): every envelope this device sends, by client timestamp, with its
/// content (sealed like the outbox) and, for groups, the version whose members received it.
extension DeviceStore {
    /// Records a send unless one with this timestamp is logged already (a retry or a resend of it).
    public func logSend(
        timestamp: Int64, destination: OutboxDestination, groupId: String? = nil, content: [UInt8]?, ownContent: [UInt8]? = nil
    ) throws(DeviceStoreError) {
        let protection = self.protection
        let now = clock()
        try write { db in
            let (kind, target): (String, String) =
                switch destination {
                case .direct(let account): ("direct", account)
                case .group(let groupId): ("group", groupId)
                }
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO resend_log (sent_timestamp, destination_kind, destination, group_id, content_sealed,
                        own_content_sealed, logged_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    timestamp, kind, target, groupId,
                    try content.map { try protection.protect($0, context: .resendLog(timestamp, own: false)) },
                    try ownContent.map { try protection.protect($0, context: .resendLog(timestamp, own: true)) }, now,
                ])
        }
    }

    /// Several sends in one transaction (a sender key handed to many members).
    public func logSends(_ sends: [(timestamp: Int64, destination: OutboxDestination, groupId: String?)]) throws(DeviceStoreError) {
        try write { _ in
            for send in sends { try logSend(timestamp: send.timestamp, destination: send.destination, groupId: send.groupId, content: nil) }
        }
    }

    /// Records the group version a group message is (being) sent for; a retry after the group
    /// changed overwrites it.
    public func setResendLogEpoch(_ epoch: Int64, timestamp: Int64) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "UPDATE resend_log SET group_epoch = ? WHERE sent_timestamp = ?", arguments: [epoch, timestamp])
        }
    }

    public func resendLogEntry(timestamp: Int64) throws(DeviceStoreError) -> ResendLogEntry? {
        let protection = self.protection
        return try read { db throws -> ResendLogEntry? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM resend_log WHERE sent_timestamp = ?", arguments: [timestamp]) else {
                return nil
            }
            let table = "resend_log", key = String(timestamp)
            let kind: String = try row.value("destination_kind", table: table, key: key)
            let target: String = try row.value("destination", table: table, key: key)
            let sealed: Data? = try row.optionalValue("content_sealed", table: table, key: key)
            let ownSealed: Data? = try row.optionalValue("own_content_sealed", table: table, key: key)
            return ResendLogEntry(
                timestamp: timestamp, destination: kind == "group" ? .group(groupId: target) : .direct(account: target),
                groupId: try row.optionalValue("group_id", table: table, key: key),
                groupEpoch: try row.optionalValue("group_epoch", table: table, key: key),
                content: try sealed.map { try protection.reveal($0, context: .resendLog(timestamp, own: false)).copyBytes() },
                ownContent: try ownSealed.map { try protection.reveal($0, context: .resendLog(timestamp, own: true)).copyBytes() },
                loggedAt: try row.value("logged_at", table: table, key: key))
        }
    }

    public func resendLogCount() throws(DeviceStoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM resend_log") ?? 0 }
    }

    /// Forgets what was logged before `before` (see `ParleyDevice.resendLogLifetime`).
    public func pruneResendLog(before: Int64) throws(DeviceStoreError) {
        try write { db in try db.execute(sql: "DELETE FROM resend_log WHERE logged_at < ?", arguments: [before]) }
    }

    /// Reserves `count` consecutive client timestamps for envelopes this device is about to send:
    /// never below `now`, always above every timestamp reserved before, so that a timestamp names
    /// one send of this device (decryption-error reports and placeholders name sends by it).
    public func nextSendTimestamps(count: Int = 1, now: Int64) throws(DeviceStoreError) -> Int64 {
        try write { db in
            let key = "counter.send_timestamp"
            let last = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [key]) ?? 0
            let first = max(now, last + 1)
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", arguments: [key, first + Int64(max(count, 1)) - 1])
            return first
        }
    }
}
