import Foundation
import GRDB

extension SQLiteRelayStore {
    func setPushEndpoint(_ address: DeviceAddress, endpoint: String, now: Int64) async throws {
        try await writeChangingLookups { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO push_subscription (account_id, device_id, endpoint, created_at) VALUES (?, ?, ?, ?)
                    """,
                arguments: [address.accountId, Int64(address.deviceId), endpoint, now])
        }
    }

    func removePushEndpoint(_ address: DeviceAddress, ifEndpoint: String?) async throws {
        try await writeChangingLookups { db in
            if let ifEndpoint {
                try db.execute(
                    sql: "DELETE FROM push_subscription WHERE account_id = ? AND device_id = ? AND endpoint = ?",
                    arguments: [address.accountId, Int64(address.deviceId), ifEndpoint])
            } else {
                try db.execute(
                    sql: "DELETE FROM push_subscription WHERE account_id = ? AND device_id = ?",
                    arguments: [address.accountId, Int64(address.deviceId)])
            }
        }
    }

    func pushEndpoint(_ address: DeviceAddress) async throws -> String? {
        try await pool.read { db in
            try String.fetchOne(
                db, sql: "SELECT endpoint FROM push_subscription WHERE account_id = ? AND device_id = ?",
                arguments: [address.accountId, Int64(address.deviceId)])
        }
    }

    func setting(_ name: String, orInsert makeDefault: @Sendable () -> Data) async throws -> Data {
        try await pool.write { db in
            if let value = try Data.fetchOne(db, sql: "SELECT value FROM relay_setting WHERE name = ?", arguments: [name]) {
                return value
            }
            let value = makeDefault()
            try db.execute(sql: "INSERT INTO relay_setting (name, value) VALUES (?, ?)", arguments: [name, value])
            return value
        }
    }
}
