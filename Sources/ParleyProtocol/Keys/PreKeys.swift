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

/// A signed Kyber prekey (PQXDH): a KEM key pair whose serialized public key (1569 bytes for
/// Kyber1024, type byte included) is signed by the identity key (XEdDSA), like a signed
/// prekey's 33 bytes.
///
/// A **last-resort** key stays after use and serves every initiator when the one-time Kyber
/// prekeys run out; the store then remembers each (Kyber id, signed prekey id, base key) it
/// was used with and refuses a repeat (`KyberPreKeyStore`). A one-time Kyber prekey is deleted
/// after its first successful use.
public struct KyberPreKeyRecord: Sendable {
    public let id: UInt32
    public let keyPair: KEMKeyPair
    public let signature: [UInt8]
    /// Seconds since 1970 when it was generated (for rotation).
    public let timestamp: UInt64
    public let isLastResort: Bool

    public init(id: UInt32, keyPair: KEMKeyPair, signature: [UInt8], timestamp: UInt64, isLastResort: Bool) {
        self.id = id
        self.keyPair = keyPair
        self.signature = signature
        self.timestamp = timestamp
        self.isLastResort = isLastResort
    }

    /// Generates a Kyber1024 prekey and signs its serialized public key with `identity`. Draws
    /// the 64-byte key seed, then the signature nonce.
    public static func generate(
        id: UInt32, identity: IdentityKeyPair, timestamp: UInt64, lastResort: Bool,
        using random: any RandomSource = SystemRandom.shared
    ) throws(ProtocolError) -> KyberPreKeyRecord {
        let pair: KEMKeyPair
        do { pair = try KEMKeyPair.generate(.kyber1024, using: random) } catch { throw .invalidKyber("key generation: \(error)") }
        let signature: [UInt8]
        do { signature = try XEdDSA.sign(pair.publicKey.serialized, with: identity.privateKey, using: random) } catch {
            throw .crypto(error)
        }
        return KyberPreKeyRecord(id: id, keyPair: pair, signature: signature, timestamp: timestamp, isLastResort: lastResort)
    }
}

/// What a device publishes so that others can start a session with it without it being online.
/// With a Kyber prekey the session is PQXDH (version 4); without one, X3DH (version 3), which
/// `SessionPolicy.requirePostQuantum` refuses.
public struct PreKeyBundle: Sendable {
    /// The bundle's signed Kyber prekey.
    public struct KyberPreKey: Sendable, Equatable {
        public let id: UInt32
        public let publicKey: KEMPublicKey
        /// XEdDSA by the identity key over `publicKey.serialized`.
        public let signature: [UInt8]

        public init(id: UInt32, publicKey: KEMPublicKey, signature: [UInt8]) {
            self.id = id
            self.publicKey = publicKey
            self.signature = signature
        }

        /// Parses the serialized public key as received: `invalidKyber` when it does not
        /// deserialize (no type byte, a type other than Kyber1024's 0x08, a wrong length).
        public init(id: UInt32, serializedPublicKey: [UInt8], signature: [UInt8]) throws(ProtocolError) {
            do { publicKey = try KEMPublicKey(serialized: serializedPublicKey) } catch {
                throw .invalidKyber("bundle Kyber prekey: \(error.reason ?? "\(error)")")
            }
            self.id = id
            self.signature = signature
        }
    }

    public let registrationId: UInt32
    public let deviceId: UInt32
    public let identityKey: IdentityKey
    public let signedPreKeyId: UInt32
    public let signedPreKey: PublicKey
    public let signedPreKeySignature: [UInt8]
    public let preKeyId: UInt32?
    public let preKey: PublicKey?
    /// Absent for a peer that publishes none (python-axolotl, a device registered before
    /// PQXDH): the session would then be X3DH.
    public let kyberPreKey: KyberPreKey?

    public init(
        registrationId: UInt32, deviceId: UInt32, identityKey: IdentityKey,
        signedPreKeyId: UInt32, signedPreKey: PublicKey, signedPreKeySignature: [UInt8],
        preKeyId: UInt32?, preKey: PublicKey?, kyberPreKey: KyberPreKey? = nil
    ) {
        self.registrationId = registrationId
        self.deviceId = deviceId
        self.identityKey = identityKey
        self.signedPreKeyId = signedPreKeyId
        self.signedPreKey = signedPreKey
        self.signedPreKeySignature = signedPreKeySignature
        self.preKeyId = preKeyId
        self.preKey = preKey
        self.kyberPreKey = kyberPreKey
    }
}
