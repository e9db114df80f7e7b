import ParleyCrypto

/// The Double Ratchet's root key. A DH ratchet step consumes it and yields the next root key
/// and a new chain key: HKDF(ikm = DH(ours, theirs), salt = RK, info = "WhisperRatchet", 64).
public struct RootKey: Sendable, Equatable {
    static let info: [UInt8] = Array("WhisperRatchet".utf8)
    let key: SecretBytes

    init(_ key: SecretBytes) { self.key = key }

    func createChain(theirRatchetKey: PublicKey, ourRatchetKey: PrivateKey) throws(ProtocolError) -> (RootKey, ChainKey) {
        do {
            let shared = try ourRatchetKey.agreement(with: theirRatchetKey)
            let derived = try HKDF.deriveSecret(ikm: shared, salt: key, info: Self.info, length: 64)
            return (RootKey(derived.slice(0..<32)), ChainKey(key: derived.slice(32..<64), index: 0))
        } catch {
            throw .crypto(error)
        }
    }
}
