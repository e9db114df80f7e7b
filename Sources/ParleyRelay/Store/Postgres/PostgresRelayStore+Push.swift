import Foundation
import PostgresNIO

extension PostgresRelayStore {
    func setPushEndpoint(_ address: DeviceAddress, endpoint: String, now: Int64) async throws {
        try await transaction { [self] connection in
            try await rows(
                connection,
                """
                INSERT INTO push_subscription (account_id, device_id, endpoint, created_at)
                VALUES (\(address.accountId), \(Int64(address.deviceId)), \(endpoint), \(now))
                ON CONFLICT (account_id, device_id) DO UPDATE SET endpoint = excluded.endpoint, created_at = excluded.created_at
                """)
        }
    }

    func removePushEndpoint(_ address: DeviceAddress, ifEndpoint: String?) async throws {
        try await transaction { [self] connection in
            try await rows(
                connection,
                """
                DELETE FROM push_subscription WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))
                    AND (\(ifEndpoint)::TEXT IS NULL OR endpoint = \(ifEndpoint))
                """)
        }
    }

    func pushEndpoint(_ address: DeviceAddress) async throws -> String? {
        try await read { [self] connection in
            try await rows(
                connection,
                "SELECT endpoint FROM push_subscription WHERE account_id = \(address.accountId) AND device_id = \(Int64(address.deviceId))"
            ).first?.decode(String.self)
        }
    }

    /// The first node to start stores the default; every other node reads that one.
    func setting(_ name: String, orInsert makeDefault: @Sendable () -> Data) async throws -> Data {
        let candidate = makeDefault()
        return try await transaction { [self] connection in
            try await rows(
                connection, "INSERT INTO relay_setting (name, value) VALUES (\(name), \(candidate)) ON CONFLICT (name) DO NOTHING")
            guard let value = try await rows(connection, "SELECT value FROM relay_setting WHERE name = \(name)").first?.decode(Data.self)
            else { throw RelayError.internalError }
            return value
        }
    }
}
