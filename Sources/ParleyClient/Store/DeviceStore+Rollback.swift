import Foundation
import GRDB
import ParleyProtocol

/// What `DeviceStore.resetAfterRollback(at:passphrase:)` discarded.
public struct RollbackReset: Sendable, Equatable {
    /// Session records deleted (every one: each may have been rewound).
    public var sessions: Int
    /// Sender-key records deleted (own keys start anew and are distributed again; members' keys
    /// come again with their next distribution).
    public var senderKeys: Int
}

/// Rollback detection (`RollbackLedger`) and key erasure (`WALScrubber`): what the rest of the
/// store and the engine call.
extension DeviceStore {
    /// Discards a row refused as `rolledBack(table:key:)` (named as in the error), with its ledger
    /// entry: a session then starts anew from a bundle (the peer repairs its side from the first
    /// message), a prekey is gone, an own sender key is replaced and distributed again.
    public func discardRolledBackRow(table: String, key: String) throws(DeviceStoreError) {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let context: SealContext
        let condition: String
        switch (table, parts.count) {
        case ("session", 2...):
            // Account names never contain "/", device ids are numbers.
            guard let device = UInt32(parts[parts.count - 1]) else { throw .invalidArgument("session key \(key)") }
            context = .session(parts.dropLast().joined(separator: "/"), device)
            condition = "name = ? AND device_id = ?"
        case ("sender_key", 3...):
            guard let device = UInt32(parts[parts.count - 1]) else { throw .invalidArgument("sender key \(key)") }
            context = .senderKey(parts[0], parts[1..<(parts.count - 1)].joined(separator: "/"), device)
            condition = "group_id = ? AND sender_name = ? AND sender_device_id = ?"
        case ("prekey", 1):
            guard let id = UInt32(parts[0]) else { throw .invalidArgument("prekey key \(key)") }
            context = .preKey(id)
            condition = "id = ?"
        case ("signed_prekey", 1):
            guard let id = UInt32(parts[0]) else { throw .invalidArgument("signed prekey key \(key)") }
            context = .signedPreKey(id)
            condition = "id = ?"
        case ("kyber_prekey", 1):
            guard let id = UInt32(parts[0]) else { throw .invalidArgument("Kyber prekey key \(key)") }
            context = .kyberPreKey(id)
            condition = "id = ?"
        default:
            throw .invalidArgument("no rollback-protected row \(table)[\(key)]")
        }
        try write { db in
            try db.execute(sql: "DELETE FROM \(table) WHERE \(condition)", arguments: StatementArguments(context.key))
            try keyRowDeleted(db, context)
            if table == "sender_key", let own = try self.account(), own.name == context.key[1], String(own.deviceId) == context.key[2] {
                // This device's own key: nobody holds its successor yet.
                try db.execute(sql: "DELETE FROM sender_key_shared WHERE group_id = ?", arguments: [context.key[0]])
            }
        }
    }

    /// Checkpoints the WAL into the database file and truncates it now: old page images of
    /// replaced key records leave the `-wal` file. Inside a transaction it runs when that commits.
    public func scrub() throws(DeviceStoreError) {
        try Self.run {
            try queue.unsafeReentrantWrite { db in
                if db.isInsideTransaction { scrubber.deleted(db) } else { scrubber.scrub(db) }
            }
        }
    }

    /// After `open` reported `storeRolledBack`: deletes every session and sender key (any of them
    /// may be an older copy: a rewound sending chain would reuse message keys), then starts the
    /// ledger afresh over what is left (identity, prekeys, history). The store then opens; the
    /// next message to each peer starts a new session from its bundle, and messages the peers
    /// send under the old sessions are repaired by decryption-error reports.
    public static func resetAfterRollback(at path: String, passphrase: Passphrase? = nil) throws(DeviceStoreError) -> RollbackReset {
        try resetAfterRollback(at: path, unlock: passphrase.map(StoreUnlock.passphrase))
    }

    /// `resetAfterRollback(at:passphrase:)` with a passphrase or a cached `StoreKey`.
    public static func resetAfterRollback(at path: String, unlock: StoreUnlock?) throws(DeviceStoreError) -> RollbackReset {
        let store = try open(at: path, unlock: unlock, clock: SystemStoreClock.now, verifyLedger: false)
        defer { try? store.close() }
        return try store.write { db in
            let sessions = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM session") ?? 0
            let senderKeys = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sender_key") ?? 0
            try db.execute(sql: "DELETE FROM session")
            try db.execute(sql: "DELETE FROM sender_key")
            try db.execute(sql: "DELETE FROM sender_key_shared")
            try store.ledger.rebuild(db)
            store.scrubber.deleted(db)
            return RollbackReset(sessions: sessions, senderKeys: senderKeys)
        }
    }

    // MARK: used by the store methods

    /// A key row was deleted in this transaction: forget it in the ledger, erase it from the WAL.
    func keyRowDeleted(_ db: Database, _ context: SealContext) throws {
        try ledger.remove(db, context)
        scrubber.deleted(db)
    }

    /// A key record was replaced in this transaction (its older version is erased in a batch).
    func keyRowReplaced(_ db: Database) {
        scrubber.replaced(db)
    }
}
