import Foundation
import GRDB

/// This device's view of a group: the relay's version (`GroupInfo.epoch`) it reflects, with the
/// members and admins of that version.
public struct GroupView: Sendable, Equatable {
    /// 0 when no versioned state was ever applied (a group known only from a legacy event).
    public let epoch: Int64
    /// Sorted account names.
    public let members: [String]
    /// Sorted account names (a subset of `members`).
    public let admins: [String]
}

/// What applying a group state changed.
public struct GroupViewChange: Sendable, Equatable {
    /// The view moved to the new version (false: it was as new or newer already).
    public let applied: Bool
    /// Accounts that were members before and are not now.
    public let removed: Set<String>
    public let added: Set<String>
    /// The version the view had before (0: none).
    public let previousEpoch: Int64

    static let unchanged = GroupViewChange(applied: false, removed: [], added: [], previousEpoch: 0)
}

/// Group views (`group_state`, `group_member`) and the member lists of the versions this device
/// has seen (`group_epoch`): applied in the order the relay queued the changes, or fast-forwarded
/// to a newer version the relay answered with, never moved back.
extension DeviceStore {
    public func groupView(groupId: String) throws(DeviceStoreError) -> GroupView {
        try read { db in
            let epoch = try Int64.fetchOne(db, sql: "SELECT epoch FROM group_state WHERE group_id = ?", arguments: [groupId]) ?? 0
            let rows = try Row.fetchAll(
                db, sql: "SELECT account, role FROM group_member WHERE group_id = ? ORDER BY account", arguments: [groupId])
            return GroupView(
                epoch: epoch, members: rows.map { $0["account"] as String },
                admins: rows.filter { ($0["role"] as String) == "admin" }.map { $0["account"] as String })
        }
    }

    /// Applies the group's state at `epoch` if it is newer than the view, and records the member
    /// list of `epoch` either way (it says who received messages sent at that version).
    @discardableResult
    public func applyGroupState(
        groupId: String, epoch: Int64, members: [String], admins: [String]
    ) throws(DeviceStoreError) -> GroupViewChange {
        let now = clock()
        let sorted = Array(Set(members)).sorted()
        return try write { db throws -> GroupViewChange in
            try db.execute(
                sql: "INSERT OR IGNORE INTO group_epoch (group_id, epoch, members, recorded_at) VALUES (?, ?, ?, ?)",
                arguments: [groupId, epoch, Self.encodeMembers(sorted), now])
            let current = try Int64.fetchOne(db, sql: "SELECT epoch FROM group_state WHERE group_id = ?", arguments: [groupId]) ?? 0
            guard epoch > current else { return .unchanged }
            let before = Set(try String.fetchAll(db, sql: "SELECT account FROM group_member WHERE group_id = ?", arguments: [groupId]))
            try db.execute(sql: "DELETE FROM group_member WHERE group_id = ?", arguments: [groupId])
            let adminSet = Set(admins)
            for member in sorted {
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account, role) VALUES (?, ?, ?)",
                    arguments: [groupId, member, adminSet.contains(member) ? "admin" : "member"])
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO group_state (group_id, epoch, updated_at) VALUES (?, ?, ?)", arguments: [groupId, epoch, now])
            let after = Set(sorted)
            return GroupViewChange(
                applied: true, removed: before.subtracting(after), added: after.subtracting(before), previousEpoch: current)
        }
    }

    /// The members of `groupId` at version `epoch`, if this device recorded that version.
    public func groupMembers(groupId: String, epoch: Int64) throws(DeviceStoreError) -> [String]? {
        try read { db in
            try String.fetchOne(
                db, sql: "SELECT members FROM group_epoch WHERE group_id = ? AND epoch = ?", arguments: [groupId, epoch]
            ).map(Self.decodeMembers)
        }
    }

    /// Whether `account` is a member of `groupId` now, or was one at a version this device still
    /// remembers (a sender key it distributed then is still needed for what it sent then).
    public func isOrWasGroupMember(_ account: String, groupId: String) throws(DeviceStoreError) -> Bool {
        try read { db in
            if try Bool.fetchOne(
                db, sql: "SELECT 1 FROM group_member WHERE group_id = ? AND account = ?", arguments: [groupId, account]) ?? false
            {
                return true
            }
            return try String.fetchAll(db, sql: "SELECT members FROM group_epoch WHERE group_id = ?", arguments: [groupId])
                .contains { Self.decodeMembers($0).contains(account) }
        }
    }

    /// Whether this device has ever recorded members for `groupId`.
    public func knowsGroupMembers(groupId: String) throws(DeviceStoreError) -> Bool {
        try read { db in
            try Bool.fetchOne(
                db,
                sql: """
                    SELECT EXISTS (SELECT 1 FROM group_member WHERE group_id = ?)
                        OR EXISTS (SELECT 1 FROM group_epoch WHERE group_id = ?)
                    """,
                arguments: [groupId, groupId]) ?? false
        }
    }

    /// Forgets member lists recorded before `before`, except each group's current version and
    /// versions the resend log still refers to.
    public func pruneGroupVersions(before: Int64) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: """
                    DELETE FROM group_epoch WHERE recorded_at < ?
                      AND epoch <> COALESCE((SELECT s.epoch FROM group_state s WHERE s.group_id = group_epoch.group_id), -1)
                      AND NOT EXISTS (SELECT 1 FROM resend_log r
                                      WHERE r.group_id = group_epoch.group_id AND r.group_epoch = group_epoch.epoch)
                    """,
                arguments: [before])
        }
    }

    /// Deletes the sender keys of the groups `member` is not in and whose view last changed
    /// before `before` (left or removed that long ago: nothing sent while it was a member can
    /// still come).
    public func deleteSenderKeysOfFormerGroups(leftBefore before: Int64, member: String) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: """
                    DELETE FROM sender_key WHERE group_id IN (
                        SELECT s.group_id FROM group_state s WHERE s.updated_at < ?
                          AND NOT EXISTS (SELECT 1 FROM group_member m WHERE m.group_id = s.group_id AND m.account = ?))
                    """,
                arguments: [before, member])
        }
    }

    // Account names never contain a newline (the relay's name rules), so a list is one per line.
    static func encodeMembers(_ members: [String]) -> String { members.joined(separator: "\n") }

    static func decodeMembers(_ text: String) -> [String] {
        text.isEmpty ? [] : text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }
}
