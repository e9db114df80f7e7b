import Foundation
import GRDB

/// The FTS5 full-text index over message bodies (table `message_search`, `rowid` = message id,
/// tokenizer `unicode61 remove_diacritics 2`).
///
/// Where the index lives depends on how the store protects values, so that the index is never
/// less protected than the bodies it indexes:
///
/// * **clear store** (no passphrase): bodies are in the file in the clear already, so the index
///   is the persistent `main.message_search`, maintained on every insert and delete.
/// * **sealed store**: a persistent index would put every word of every message in the file in
///   the clear, undoing the sealing. The index is instead `temp.message_search`, which with
///   `PRAGMA temp_store = MEMORY` lives only in the process's memory. It is built on the first
///   search after opening (unsealing every body once: O(number of messages)), then maintained
///   on every insert and delete like the persistent one. It disappears when the store closes.
///   `main.message_search` stays empty.
enum MessageSearchIndex {
    /// The schema holding the live index, or nil for a sealed store whose index is not built yet
    /// (it will be built from all bodies on the first search, so writes may skip it).
    static func liveSchema(_ db: Database, protection: ValueProtection) throws -> String? {
        guard protection.isSealed else { return "main" }
        return try temporaryIndexExists(db) ? "temp" : nil
    }

    static func add(_ db: Database, id: Int64, body: String, protection: ValueProtection) throws {
        guard let schema = try liveSchema(db, protection: protection) else { return }
        try db.execute(sql: "INSERT INTO \(schema).message_search (rowid, body) VALUES (?, ?)", arguments: [id, body])
    }

    static func remove(_ db: Database, id: Int64, protection: ValueProtection) throws {
        guard let schema = try liveSchema(db, protection: protection) else { return }
        try db.execute(sql: "DELETE FROM \(schema).message_search WHERE rowid = ?", arguments: [id])
    }

    /// The schema to search, building the in-memory index of a sealed store if needed. Bodies
    /// that do not unseal are left out of the index (they show up as `unreadable` in listings).
    static func prepare(_ db: Database, protection: ValueProtection) throws -> String {
        if let schema = try liveSchema(db, protection: protection) { return schema }
        try db.execute(
            sql: "CREATE VIRTUAL TABLE temp.message_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')")
        var after: Int64 = 0
        while true {
            let rows = try Row.fetchAll(
                db, sql: "SELECT id, body_sealed FROM message WHERE id > ? AND body_sealed IS NOT NULL ORDER BY id LIMIT 500",
                arguments: [after])
            guard let last = rows.last else { break }
            for row in rows {
                let raw: DatabaseValue = row["id"]
                let sealedValue: DatabaseValue = row["body_sealed"]
                guard let id = Int64.fromDatabaseValue(raw), let sealed = Data.fromDatabaseValue(sealedValue),
                      let text = try? protection.reveal(sealed, context: .messageBody(id)).withBytes({ String(validating: $0, as: UTF8.self) })
                else { continue }
                try db.execute(sql: "INSERT INTO temp.message_search (rowid, body) VALUES (?, ?)", arguments: [id, text])
            }
            let lastRaw: DatabaseValue = last["id"]
            guard let lastId = Int64.fromDatabaseValue(lastRaw) else { break }
            after = lastId
        }
        return "temp"
    }

    private static func temporaryIndexExists(_ db: Database) throws -> Bool {
        try Bool.fetchOne(
            db, sql: "SELECT COUNT(*) > 0 FROM sqlite_temp_master WHERE type = 'table' AND name = 'message_search'") ?? false
    }
}
