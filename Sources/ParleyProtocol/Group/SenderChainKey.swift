import ParleyCrypto

/// A sender-key chain key: seed = HMAC(CK, 0x01) for the message at `iteration`,
/// next = HMAC(CK, 0x02).
public struct SenderChainKey: Sendable, Equatable {
    let key: SecretBytes
    public let iteration: UInt32

    init(key: SecretBytes, iteration: UInt32) {
        self.key = key
        self.iteration = iteration
    }

    /// The key at `iteration` and the chain at `iteration + 1`; `chainExhausted` at
    /// `UInt32.max`, as libsignal's `SenderChainKey::next` ("sender chain is too long").
    func step() throws(ProtocolError) -> (SenderMessageKey, SenderChainKey) {
        guard iteration < UInt32.max else { throw .chainExhausted(position: iteration) }
        var mac = HMACSHA256(key: key)
        defer { mac.wipe() }
        let seed = SecretBytes(count: 32) { out in ChainKey.messageKeySeed.withBytes { mac.authenticate($0, into: out) } }
        let next = SecretBytes(count: 32) { out in ChainKey.chainKeySeed.withBytes { mac.authenticate($0, into: out) } }
        return (SenderMessageKey(seed: seed, iteration: iteration), SenderChainKey(key: next, iteration: iteration + 1))
    }

    func next() throws(ProtocolError) -> SenderChainKey {
        guard iteration < UInt32.max else { throw .chainExhausted(position: iteration) }
        var mac = HMACSHA256(key: key)
        defer { mac.wipe() }
        let next = SecretBytes(count: 32) { out in ChainKey.chainKeySeed.withBytes { mac.authenticate($0, into: out) } }
        return SenderChainKey(key: next, iteration: iteration + 1)
    }
}

/// The key for one group message, kept as its seed: HKDF(seed, salt = 0*32,
/// info = "WhisperGroup", 48) = iv[0:16] || cipher_key[16:48].
public struct SenderMessageKey: Sendable, Equatable {
    static let info: [UInt8] = Array("WhisperGroup".utf8)
    let seed: SecretBytes
    public let iteration: UInt32

    func withKeyAndIV<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(ProtocolError) -> R) throws(ProtocolError) -> R {
        let material: SecretBytes
        do { material = try HKDF.deriveSecret(ikm: seed, salt: [UInt8](), info: Self.info, length: 48) } catch { throw .crypto(error) }
        return try material.withBytes { (m) throws(ProtocolError) -> R in
            try body(UnsafeRawBufferPointer(rebasing: m[16..<48]), UnsafeRawBufferPointer(rebasing: m[0..<16]))
        }
    }
}
