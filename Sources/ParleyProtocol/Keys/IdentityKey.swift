import ParleyCrypto

/// A long-term identity public key (Curve25519, serialized `0x05 || u`).
public struct IdentityKey: Hashable, Sendable {
    public let publicKey: PublicKey

    public init(_ publicKey: PublicKey) { self.publicKey = publicKey }

    public init(serialized: [UInt8]) throws(ProtocolError) {
        do { publicKey = try PublicKey(serialized: serialized) } catch { throw .invalidKey("identity key") }
    }

    public var serialized: [UInt8] { publicKey.serialized }
}

/// A device's identity key pair.
public struct IdentityKeyPair: Sendable {
    public let privateKey: PrivateKey
    public var identityKey: IdentityKey { IdentityKey(privateKey.publicKey) }

    public init(privateKey: PrivateKey) { self.privateKey = privateKey }

    public static func generate(using random: any RandomSource = SystemRandom.shared) throws(ProtocolError) -> IdentityKeyPair {
        do { return IdentityKeyPair(privateKey: try PrivateKey.generate(using: random)) } catch { throw .crypto(error) }
    }
}
