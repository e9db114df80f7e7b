import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// The local identity and the identities seen for other devices (`local_identity`,
/// `remote_identity`). Trust policy: trust on first use, as `InMemoryProtocolStore` — an unknown
/// address is trusted, a known one only with the same key, whatever the direction.
extension DeviceStore: IdentityKeyStore {
    public func identityKeyPair() throws(DeviceStoreError) -> IdentityKeyPair {
        try read { db throws -> IdentityKeyPair in
            guard let row = try Row.fetchOne(db, sql: "SELECT public_key, private_key_sealed FROM local_identity WHERE id = 1")
            else { throw DeviceStoreError.notInitialised }
            return IdentityKeyPair(privateKey: try revealKeyPair(row, context: .localIdentity))
        }
    }

    public func localRegistrationId() throws(DeviceStoreError) -> UInt32 {
        try read { db throws -> UInt32 in
            guard let row = try Row.fetchOne(db, sql: "SELECT registration_id FROM local_identity WHERE id = 1") else {
                throw DeviceStoreError.notInitialised
            }
            return try row.uint32("registration_id", table: "local_identity", key: "1")
        }
    }

    @discardableResult
    public func saveIdentity(_ identity: IdentityKey, for address: ProtocolAddress) throws(DeviceStoreError) -> Bool {
        let now = clock()
        return try write { db throws -> Bool in
            let known = try storedIdentityKey(db, address)
            if known == identity { return false }
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO remote_identity (name, device_id, public_key, verified, first_seen)
                    VALUES (?, ?, ?, 0, ?)
                    """,
                arguments: [address.name, Int64(address.deviceId), Data(identity.serialized), now])
            return known != nil
        }
    }

    public func isTrustedIdentity(
        _ identity: IdentityKey, for address: ProtocolAddress, direction: Direction
    ) throws(DeviceStoreError) -> Bool {
        try read { db throws -> Bool in
            guard let known = try storedIdentityKey(db, address) else { return true }
            return known == identity
        }
    }

    public func identity(for address: ProtocolAddress) throws(DeviceStoreError) -> IdentityKey? {
        try read { db in try storedIdentityKey(db, address) }
    }

    // MARK: beyond the protocol

    /// The recorded identity of `address` with its verification state, or nil.
    public func remoteIdentity(for address: ProtocolAddress) throws(DeviceStoreError) -> RemoteIdentity? {
        try read { db throws -> RemoteIdentity? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT public_key, verified, first_seen FROM remote_identity WHERE name = ? AND device_id = ?",
                arguments: [address.name, Int64(address.deviceId)])
            else { return nil }
            let key = address.description
            let publicKey: Data = try row.value("public_key", table: "remote_identity", key: key)
            guard let identity = try? IdentityKey(serialized: Array(publicKey)) else {
                throw DeviceStoreError.corruptRow(table: "remote_identity", key: key, reason: "not a public key")
            }
            return RemoteIdentity(
                address: address, identityKey: identity,
                verified: try row.bool("verified", table: "remote_identity", key: key),
                firstSeen: try row.value("first_seen", table: "remote_identity", key: key))
        }
    }

    /// Marks the recorded identity of `address` as verified (or not). Returns false when no
    /// identity is recorded for it.
    @discardableResult
    public func setVerified(_ verified: Bool, for address: ProtocolAddress) throws(DeviceStoreError) -> Bool {
        try write { db throws -> Bool in
            try db.execute(
                sql: "UPDATE remote_identity SET verified = ? WHERE name = ? AND device_id = ?",
                arguments: [verified, address.name, Int64(address.deviceId)])
            return db.changesCount > 0
        }
    }

    private func storedIdentityKey(_ db: Database, _ address: ProtocolAddress) throws -> IdentityKey? {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT public_key FROM remote_identity WHERE name = ? AND device_id = ?",
            arguments: [address.name, Int64(address.deviceId)])
        else { return nil }
        let publicKey: Data = try row.value("public_key", table: "remote_identity", key: address.description)
        guard let identity = try? IdentityKey(serialized: Array(publicKey)) else {
            throw DeviceStoreError.corruptRow(table: "remote_identity", key: address.description, reason: "not a public key")
        }
        return identity
    }
}
