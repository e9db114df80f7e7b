import Foundation
import GRDB

/// Reading columns without trusting the file: a value of the wrong type or out of range
/// reports `corruptRow` for that row instead of trapping (GRDB's subscripts trap on a failed
/// conversion).
extension Row {
    func value<T: DatabaseValueConvertible>(
        _ column: String, as type: T.Type = T.self, table: String, key: @autoclosure () -> String
    ) throws(DeviceStoreError) -> T {
        let raw: DatabaseValue = self[column]
        guard let value = T.fromDatabaseValue(raw) else {
            throw .corruptRow(table: table, key: key(), reason: "column \(column) is missing or has the wrong type")
        }
        return value
    }

    func optionalValue<T: DatabaseValueConvertible>(
        _ column: String, as type: T.Type = T.self, table: String, key: @autoclosure () -> String
    ) throws(DeviceStoreError) -> T? {
        let raw: DatabaseValue = self[column]
        if raw.isNull { return nil }
        guard let value = T.fromDatabaseValue(raw) else {
            throw .corruptRow(table: table, key: key(), reason: "column \(column) has the wrong type")
        }
        return value
    }

    func uint32(_ column: String, table: String, key: @autoclosure () -> String) throws(DeviceStoreError) -> UInt32 {
        let wide: Int64 = try value(column, table: table, key: key())
        guard let narrow = UInt32(exactly: wide) else {
            throw .corruptRow(table: table, key: key(), reason: "column \(column) is out of the uint32 range")
        }
        return narrow
    }

    func bool(_ column: String, table: String, key: @autoclosure () -> String) throws(DeviceStoreError) -> Bool {
        let raw: Int64 = try value(column, table: table, key: key())
        return raw != 0
    }
}
