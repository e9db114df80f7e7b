/// Which row a sealed value belongs to: the table, the row's key, and for the rollback-protected
/// key rows its version (`RollbackLedger`). It is the associated data of the AEAD, so a sealed
/// value copied into another row (or another table), or given another version, does not open.
///
/// Encoding: `"parley-client-store/v1"`, then the table and each key part, each as a 4-byte
/// big-endian length followed by its UTF-8 bytes (unambiguous whatever the names contain). A
/// versioned row (version > 0) uses `"parley-client-store/v2"`, the same parts, then the version
/// as 8 bytes big-endian.
struct SealContext: Sendable, Equatable {
    let table: String
    let key: [String]
    /// 0 for values that are not versioned (message bodies, the local identity, the outbox...).
    let version: UInt64

    init(table: String, key: [String], version: UInt64 = 0) {
        self.table = table
        self.key = key
        self.version = version
    }

    /// The same row at `version`.
    func versioned(_ version: UInt64) -> SealContext { SealContext(table: table, key: key, version: version) }

    /// The key as shown in errors (`name/device`, `group/name/device`, ...).
    var keyDescription: String { key.joined(separator: "/") }

    /// The key parts, framed: how the ledger names the row.
    var keyEncoding: [UInt8] { key.flatMap(Self.frame) }

    static func frame(_ s: String) -> [UInt8] {
        let bytes = Array(s.utf8)
        let n = UInt32(truncatingIfNeeded: bytes.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + bytes
    }

    var associatedData: [UInt8] {
        var out = Array((version == 0 ? "parley-client-store/v1" : "parley-client-store/v2").utf8)
        out += Self.frame(table)
        out += keyEncoding
        if version != 0 { out += withUnsafeBytes(of: version.bigEndian) { Array($0) } }
        return out
    }
}

extension SealContext {
    static let localIdentity = SealContext(table: "local_identity", key: ["1"])

    static func preKey(_ id: UInt32) -> SealContext { SealContext(table: "prekey", key: [String(id)]) }

    static func signedPreKey(_ id: UInt32) -> SealContext { SealContext(table: "signed_prekey", key: [String(id)]) }

    static func kyberPreKey(_ id: UInt32) -> SealContext { SealContext(table: "kyber_prekey", key: [String(id)]) }

    static func session(_ name: String, _ deviceId: UInt32) -> SealContext {
        SealContext(table: "session", key: [name, String(deviceId)])
    }

    static func senderKey(_ groupId: String, _ name: String, _ deviceId: UInt32) -> SealContext {
        SealContext(table: "sender_key", key: [groupId, name, String(deviceId)])
    }

    static func messageBody(_ id: Int64) -> SealContext { SealContext(table: "message", key: [String(id)]) }
}
