import Foundation
import GRDB

/// This device's Web Push registration as the store keeps it.
public struct PushRegistration: Sendable, Equatable {
    /// The push service URL the relay POSTs to.
    public let endpoint: String
    /// The relay's VAPID key it was registered under.
    public let vapidKey: VAPIDPublicKey
    /// When it was registered (ms since 1970).
    public let registeredAt: Int64

    /// The endpoint's host: what is shown (the rest of the URL identifies the subscription).
    public var endpointHost: String { WebPushSubscription.host(of: endpoint) }
}

/// Web Push state (`push_state`, schema `client-v8-push`): the relay's VAPID key this device accepted
/// (pinned when first fetched, kept when the device unregisters) and the registered endpoint, sealed.
extension DeviceStore {
    static let pushContext = SealContext(table: "push_state", key: ["1"])

    /// The relay's VAPID key this device accepted, if it ever fetched one.
    public func pinnedVAPIDKey() throws(DeviceStoreError) -> VAPIDPublicKey? {
        try read { db throws -> VAPIDPublicKey? in
            guard let row = try Row.fetchOne(db, sql: "SELECT vapid_key FROM push_state WHERE id = 1") else { return nil }
            let raw: Data = try row.value("vapid_key", table: "push_state", key: "1")
            do {
                return try VAPIDPublicKey(rawRepresentation: raw)
            } catch {
                throw DeviceStoreError.corruptRow(table: "push_state", key: "1", reason: "vapid_key is not a P-256 point")
            }
        }
    }

    /// Pins `key` as the relay's VAPID key when none is pinned yet (trust on first use); a pinned key is
    /// replaced only together with a new registration (`savePushRegistration`).
    public func pinVAPIDKeyIfNone(_ key: VAPIDPublicKey) throws(DeviceStoreError) {
        let now = clock()
        try write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO push_state (id, vapid_key, vapid_key_seen_at) VALUES (1, ?, ?)",
                arguments: [key.rawRepresentation, now])
        }
    }

    /// Records that `endpoint` is registered at the relay under `key` (which becomes the pinned key).
    public func savePushRegistration(endpoint: String, key: VAPIDPublicKey, at now: Int64) throws(DeviceStoreError) {
        let sealed = try protection.protect(Array(endpoint.utf8), context: Self.pushContext)
        try write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO push_state (id, vapid_key, vapid_key_seen_at, endpoint_sealed, registered_at)
                    VALUES (1, ?, COALESCE((SELECT vapid_key_seen_at FROM push_state WHERE id = 1 AND vapid_key = ?), ?), ?, ?)
                    """,
                arguments: [key.rawRepresentation, key.rawRepresentation, now, sealed, now])
        }
    }

    /// The registration, or nil when this device is not registered for push.
    public func pushRegistration() throws(DeviceStoreError) -> PushRegistration? {
        let protection = self.protection
        return try read { db throws -> PushRegistration? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT vapid_key, endpoint_sealed, registered_at FROM push_state WHERE id = 1 AND endpoint_sealed IS NOT NULL")
            else { return nil }
            let sealed: Data = try row.value("endpoint_sealed", table: "push_state", key: "1")
            let revealed = try protection.reveal(sealed, context: Self.pushContext)
            guard let endpoint = revealed.withBytes({ String(validating: $0, as: UTF8.self) }) else {
                throw DeviceStoreError.corruptRow(table: "push_state", key: "1", reason: "endpoint is not UTF-8")
            }
            let raw: Data = try row.value("vapid_key", table: "push_state", key: "1")
            guard let key = try? VAPIDPublicKey(rawRepresentation: raw) else {
                throw DeviceStoreError.corruptRow(table: "push_state", key: "1", reason: "vapid_key is not a P-256 point")
            }
            return PushRegistration(
                endpoint: endpoint, vapidKey: key, registeredAt: try row.value("registered_at", table: "push_state", key: "1"))
        }
    }

    /// Forgets the registration; the pinned key stays.
    public func removePushRegistration() throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "UPDATE push_state SET endpoint_sealed = NULL, registered_at = NULL WHERE id = 1")
        }
    }
}
