import Foundation
import GRDB
import GRDBSQLite

/// Runs one of GRDB's cached statements through SQLite's C API: binds each value directly and steps it once.
///
/// For the two inserts every sent message makes (its `message` row and its `queue_entry`), GRDB's argument
/// handling (an array of existential values converted one by one) cost more than SQLite's own work. The
/// statement stays GRDB's (prepared, cached and finalized by GRDB, inside GRDB's transaction); this only
/// replaces binding and stepping. Values are bound as GRDB binds them (UUIDs as 16-byte blobs), and SQLite
/// copies every text and blob (`SQLITE_TRANSIENT`), so nothing here outlives the call.
struct SQLiteRawStatement {
    private let handle: SQLiteStatement
    private let connection: SQLiteConnection?
    private var index: Int32 = 0

    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    init(_ statement: Statement, in db: Database) {
        handle = statement.sqliteStatement
        connection = db.sqliteConnection
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    mutating func bind(_ value: Int64) {
        index += 1
        sqlite3_bind_int64(handle, index, value)
    }

    mutating func bind(_ value: Int64?) {
        if let value { bind(value) } else { bindNull() }
    }

    mutating func bindNull() {
        index += 1
        sqlite3_bind_null(handle, index)
    }

    mutating func bind(_ value: String) {
        index += 1
        let position = index
        var text = value
        text.withUTF8 { bytes in
            _ = sqlite3_bind_text(handle, position, bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, Int32(bytes.count), Self.transient)
        }
    }

    mutating func bind(_ value: Data) {
        index += 1
        let position = index
        value.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress {
                _ = sqlite3_bind_blob(handle, position, base, Int32(bytes.count), Self.transient)
            } else {
                _ = sqlite3_bind_zeroblob(handle, position, 0)
            }
        }
    }

    mutating func bind(_ value: UUID) {
        index += 1
        let position = index
        withUnsafeBytes(of: value.uuid) { bytes in
            _ = sqlite3_bind_blob(handle, position, bytes.baseAddress, Int32(bytes.count), Self.transient)
        }
    }

    mutating func bind(_ value: UUID?) {
        if let value { bind(value) } else { bindNull() }
    }

    /// Steps a statement that returns no rows; throws SQLite's error (the transaction then rolls back).
    func run() throws {
        let code = sqlite3_step(handle)
        defer { sqlite3_reset(handle) }
        guard code == SQLITE_DONE else {
            let message = connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message)
        }
    }
}
