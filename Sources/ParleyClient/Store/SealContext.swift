/// Which row a sealed value belongs to: the table and the row's key. It is the associated data
/// of the AEAD, so a sealed value copied into another row (or another table) does not open.
///
/// Encoding: `"parley-client-store/v1"`, then the table and each key part, each as a 4-byte
/// big-endian length followed by its UTF-8 bytes (unambiguous whatever the names contain).
struct SealContext: Sendable, Equatable {
    let table: String
    let key: [String]

    init(table: String, key: [String]) {
        self.table = table
        self.key = key
    }

    /// The key as shown in errors (`name.device`, `group/name.device`, ...).
    var keyDescription: String { key.joined(separator: "/") }

    var associatedData: [UInt8] {
        var out = Array("parley-client-store/v1".utf8)
        func append(_ s: String) {
            let bytes = Array(s.utf8)
            let n = UInt32(truncatingIfNeeded: bytes.count)
            out += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
            out += bytes
        }
        append(table)
        for part in key { append(part) }
        return out
    }
}

extension SealContext {
    static let localIdentity = SealContext(table: "local_identity", key: ["1"])

    static func preKey(_ id: UInt32) -> SealContext { SealContext(table: "prekey", key: [String(id)]) }

    static func signedPreKey(_ id: UInt32) -> SealContext { SealContext(table: "signed_prekey", key: [String(id)]) }

    static func session(_ name: String, _ deviceId: UInt32) -> SealContext {
        SealContext(table: "session", key: [name, String(deviceId)])
    }

    static func senderKey(_ groupId: String, _ name: String, _ deviceId: UInt32) -> SealContext {
        SealContext(table: "sender_key", key: [groupId, name, String(deviceId)])
    }

    static func messageBody(_ id: Int64) -> SealContext { SealContext(table: "message", key: [String(id)]) }
}
