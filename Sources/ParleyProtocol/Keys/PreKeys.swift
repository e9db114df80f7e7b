import ParleyCrypto

/// A one-time prekey this device published.
public struct PreKeyRecord: Sendable {
    public let id: UInt32
    public let keyPair: KeyPair

    public init(id: UInt32, keyPair: KeyPair) {
        self.id = id
        self.keyPair = keyPair
    }
}

/// A signed prekey: a medium-term key whose public half is signed by the identity key.
public struct SignedPreKeyRecord: Sendable {
    public let id: UInt32
    public let keyPair: KeyPair
    public let signature: [UInt8]
    /// Seconds since 1970 when it was generated (for rotation).
    public let timestamp: UInt64

    public init(id: UInt32, keyPair: KeyPair, signature: [UInt8], timestamp: UInt64) {
        self.id = id
        self.keyPair = keyPair
        self.signature = signature
        self.timestamp = timestamp
    }

    /// Generates a signed prekey and signs its serialized public key with `identity`.
    public static func generate(
        id: UInt32, identity: IdentityKeyPair, timestamp: UInt64, using random: any RandomSource = SystemRandom.shared
    ) throws(ProtocolError) -> SignedPreKeyRecord {
        do {
            let pair = try PrivateKey.generate(using: random)
            let signature = try XEdDSA.sign(pair.publicKey.serialized, with: identity.privateKey, using: random)
            return SignedPreKeyRecord(id: id, keyPair: pair, signature: signature, timestamp: timestamp)
        } catch {
            throw .crypto(error)
        }
    }
}

/// What a device publishes so that others can start a session with it without it being online.
public struct PreKeyBundle: Sendable {
    public let registrationId: UInt32
    public let deviceId: UInt32
    public let identityKey: IdentityKey
    public let signedPreKeyId: UInt32
    public let signedPreKey: PublicKey
    public let signedPreKeySignature: [UInt8]
    public let preKeyId: UInt32?
    public let preKey: PublicKey?

    public init(
        registrationId: UInt32, deviceId: UInt32, identityKey: IdentityKey,
        signedPreKeyId: UInt32, signedPreKey: PublicKey, signedPreKeySignature: [UInt8],
        preKeyId: UInt32?, preKey: PublicKey?
    ) {
        self.registrationId = registrationId
        self.deviceId = deviceId
        self.identityKey = identityKey
        self.signedPreKeyId = signedPreKeyId
        self.signedPreKey = signedPreKey
        self.signedPreKeySignature = signedPreKeySignature
        self.preKeyId = preKeyId
        self.preKey = preKey
    }
}
