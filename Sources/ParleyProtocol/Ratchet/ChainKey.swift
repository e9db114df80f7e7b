import ParleyCrypto

/// A symmetric-ratchet chain key. It can only produce the message keys for its index and the
/// next chain key: seed = HMAC(CK, 0x01), next = HMAC(CK, 0x02).
public struct ChainKey: Sendable, Equatable {
    static let messageKeySeed: [UInt8] = [0x01]
    static let chainKeySeed: [UInt8] = [0x02]

    let key: SecretBytes
    public let index: UInt32

    init(key: SecretBytes, index: UInt32) {
        self.key = key
        self.index = index
    }

    /// The message keys for `index` and the chain key for `index + 1`, sharing one HMAC setup.
    /// Throws `chainExhausted` at `index == UInt32.max` (there is no index 2^32).
    func step() throws(ProtocolError) -> (MessageKeys, ChainKey) {
        guard index < UInt32.max else { throw .chainExhausted(position: index) }
        var mac = HMACSHA256(key: key)
        defer { mac.wipe() }
        var seed = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let keys: MessageKeys = withUnsafeMutableBytes(of: &seed) { seedBuf in
            Self.messageKeySeed.withBytes { mac.authenticate($0, into: seedBuf) }
            return MessageKeys.derive(seed: UnsafeRawBufferPointer(seedBuf), counter: index)
        }
        seed = (0, 0, 0, 0)
        return (keys, ChainKey(key: nextKey(mac), index: index + 1))
    }

    /// The chain key for `index + 1` without deriving this index's message keys.
    func next() throws(ProtocolError) -> ChainKey {
        guard index < UInt32.max else { throw .chainExhausted(position: index) }
        var mac = HMACSHA256(key: key)
        defer { mac.wipe() }
        return ChainKey(key: nextKey(mac), index: index + 1)
    }

    private func nextKey(_ mac: HMACSHA256) -> SecretBytes {
        SecretBytes(count: 32) { out in Self.chainKeySeed.withBytes { mac.authenticate($0, into: out) } }
    }
}

/// The keys for one message: AES-256 key, HMAC-SHA256 key and CBC IV, from
/// HKDF(seed, salt = 0*32, info = "WhisperMessageKeys", 80) = cipher[0:32] || mac[32:64] || iv[64:80].
public struct MessageKeys: Sendable, Equatable {
    static let info: [UInt8] = Array("WhisperMessageKeys".utf8)

    /// cipher key || mac key || iv.
    let material: SecretBytes
    public let counter: UInt32

    init(material: SecretBytes, counter: UInt32) {
        self.material = material
        self.counter = counter
    }

    static func derive(seed: UnsafeRawBufferPointer, counter: UInt32) -> MessageKeys {
        var prk = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let material: SecretBytes = withUnsafeMutableBytes(of: &prk) { prkBuf in
            HKDF.extractWithZeroSalt(ikm: seed, into: prkBuf)
            return SecretBytes(count: 80) { out in
                info.withBytes { i in
                    // 80 bytes is far below HKDF's limit; expansion cannot fail here.
                    try? HKDF.expand(prk: UnsafeRawBufferPointer(prkBuf), info: i, into: out)
                }
            }
        }
        prk = (0, 0, 0, 0)
        return MessageKeys(material: material, counter: counter)
    }

    func withCipherKey<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(ProtocolError) -> R) throws(ProtocolError) -> R {
        try material.withBytes { (m) throws(ProtocolError) -> R in
            try body(UnsafeRawBufferPointer(rebasing: m[0..<32]), UnsafeRawBufferPointer(rebasing: m[64..<80]))
        }
    }

    func withMacKey<R>(_ body: (UnsafeRawBufferPointer) throws(ProtocolError) -> R) throws(ProtocolError) -> R {
        try material.withBytes { (m) throws(ProtocolError) -> R in try body(UnsafeRawBufferPointer(rebasing: m[32..<64])) }
    }
}
