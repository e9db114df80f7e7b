import CSodium

/// SHA-512 (libsodium), used by the XEdDSA signature scheme.
public struct SHA512Hasher {
    private var state = crypto_hash_sha512_state()

    public init() {
        _ = Sodium.ready
        crypto_hash_sha512_init(&state)
    }

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        if let base = data.baseAddress, data.count > 0 {
            crypto_hash_sha512_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(data.count))
        }
    }

    public mutating func update<D: ByteView>(_ data: D) {
        data.withBytes { update($0) }
    }

    public mutating func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        out.withUnsafeMutableBufferPointer { o in
            if let b = o.baseAddress { crypto_hash_sha512_final(&state, b) }
        }
        return out
    }

    /// Writes the 64-byte digest to `out` (which must hold 64 bytes); libsodium wipes the state.
    public mutating func finish(into out: UnsafeMutablePointer<UInt8>) {
        crypto_hash_sha512_final(&state, out)
    }

    public static func hash<D: ByteView>(_ data: D) -> [UInt8] {
        var h = SHA512Hasher()
        h.update(data)
        return h.finish()
    }
}
