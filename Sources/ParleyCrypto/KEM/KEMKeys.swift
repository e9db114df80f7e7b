import CSodium
#if canImport(Glibc)
import Glibc
#endif

/// A key encapsulation mechanism, named by the type byte that starts every serialized key and
/// ciphertext (libsignal's `kem::KeyType`). Keys and ciphertexts are `type || raw`; the type
/// byte decides the KEM, the exact lengths and the algorithms.
public enum KEMKeyType: UInt8, Sendable, CaseIterable {
    /// CRYSTALS-Kyber1024, round 3 (v3.02), as libcrux `kyber1024`: libsignal's PQXDH KEM.
    case kyber1024 = 0x08
    // ML-KEM-1024 (FIPS 203) is 0x0A in libsignal; it would be one more case here, with its
    // lengths below and its transform beside `Kyber1024` (the IND-CPA layer is shared).

    /// The key type of a type byte; `badKeyType` for any other (0x07, Kyber768, and 0x0A,
    /// ML-KEM-1024, are not compiled into shipped libsignal either).
    public init(typeByte: UInt8) throws(KEMError) {
        guard let type = KEMKeyType(rawValue: typeByte) else { throw .badKeyType(typeByte) }
        self = type
    }

    /// Serialized length (type byte included) of a public key, secret key or ciphertext.
    public func serializedLength(of object: KEMObject) -> Int {
        switch (self, object) {
        case (.kyber1024, .publicKey): return 1 + KyberParameters.publicKeyBytes      // 1569
        case (.kyber1024, .secretKey): return 1 + KyberParameters.secretKeyBytes      // 3169
        case (.kyber1024, .ciphertext): return 1 + KyberParameters.ciphertextBytes    // 1569
        }
    }

    /// Bytes of seed key generation takes (Kyber1024: d || z).
    public var keyGenerationSeedLength: Int {
        switch self {
        case .kyber1024: return KyberParameters.keyGenerationSeedBytes
        }
    }

    /// Bytes of randomness an encapsulation takes (Kyber1024: m).
    public var encapsulationRandomnessLength: Int {
        switch self {
        case .kyber1024: return KyberParameters.encapsulationRandomnessBytes
        }
    }

    public var sharedSecretLength: Int {
        switch self {
        case .kyber1024: return KyberParameters.sharedSecretBytes
        }
    }

    /// Checks a serialized value's type byte, then its length, in libsignal's order: empty is
    /// `noKeyType`, an unknown type byte `badKeyType`, a wrong length `badLength`.
    static func parse(_ bytes: UnsafeRawBufferPointer, as object: KEMObject) throws(KEMError) -> KEMKeyType {
        guard let first = bytes.first else { throw .noKeyType }
        let type = try KEMKeyType(typeByte: first)
        let expected = type.serializedLength(of: object)
        guard bytes.count == expected else { throw .badLength(object, expected: expected, actual: bytes.count) }
        return type
    }
}

/// A KEM public key, `type || raw` (Kyber1024: 1569 bytes).
public struct KEMPublicKey: Hashable, Sendable {
    public let keyType: KEMKeyType
    /// `type || raw`, as sent in bundles and signed by the identity key.
    public let serialized: [UInt8]

    /// Parses `type || raw`: `noKeyType`, `badKeyType` or `badLength` otherwise. The key's
    /// coefficients are not checked (libsignal does not check them either).
    public init<B: ByteView>(serialized bytes: B) throws(KEMError) {
        let (type, array) = try bytes.withBytes { (b) throws(KEMError) in (try KEMKeyType.parse(b, as: .publicKey), Array(b)) }
        keyType = type
        serialized = array
    }

    init(keyType: KEMKeyType, validated serialized: [UInt8]) {
        self.keyType = keyType
        self.serialized = serialized
    }

    /// Encapsulates a fresh secret to this key with randomness drawn from `random` (one draw).
    public func encapsulate(using random: any RandomSource) throws(KEMError) -> (sharedSecret: SecretBytes, ciphertext: KEMCiphertext) {
        var m = random.draw(keyType.encapsulationRandomnessLength, purpose: .kemEncapsulation)
        defer { wipe(&m) }
        return try encapsulate(randomness: m)
    }

    /// Encapsulates with the given randomness (Kyber1024: the 32-byte m; libcrux
    /// `encapsulate(pk, randomness)`). Deterministic: for vectors and tests.
    public func encapsulate<M: ByteView>(randomness: M) throws(KEMError) -> (sharedSecret: SecretBytes, ciphertext: KEMCiphertext) {
        let type = keyType
        var ciphertext = [UInt8](repeating: 0, count: type.serializedLength(of: .ciphertext))
        ciphertext[0] = type.rawValue
        let secret = try SecretBytes(count: type.sharedSecretLength) { (secret) throws(KEMError) in
            try randomness.withBytes { (m) throws(KEMError) in
                guard m.count == type.encapsulationRandomnessLength else {
                    throw .badRandomnessLength(expected: type.encapsulationRandomnessLength, actual: m.count)
                }
                try serialized.withBytes { (pk) throws(KEMError) in
                    try withMutableBytes(&ciphertext) { (c) throws(KEMError) in
                        switch type {
                        case .kyber1024:
                            try Kyber1024.encapsulate(
                                publicKey: UnsafeRawBufferPointer(rebasing: pk[1...]), randomness: m,
                                ciphertext: UnsafeMutableRawBufferPointer(rebasing: c[1...]), sharedSecret: secret)
                        }
                    }
                }
            }
        }
        return (secret, KEMCiphertext(keyType: type, validated: ciphertext))
    }
}

extension KEMPublicKey: CustomStringConvertible {
    public var description: String { "KEMPublicKey(\(keyType), \(serialized.prefix(9).hexString)…)" }
}

/// A KEM ciphertext, `type || raw` (Kyber1024: 1569 bytes).
public struct KEMCiphertext: Hashable, Sendable {
    public let keyType: KEMKeyType
    public let serialized: [UInt8]

    /// Parses `type || raw`: `noKeyType`, `badKeyType` or `badLength` otherwise.
    public init<B: ByteView>(serialized bytes: B) throws(KEMError) {
        let (type, array) = try bytes.withBytes { (b) throws(KEMError) in (try KEMKeyType.parse(b, as: .ciphertext), Array(b)) }
        keyType = type
        serialized = array
    }

    init(keyType: KEMKeyType, validated serialized: [UInt8]) {
        self.keyType = keyType
        self.serialized = serialized
    }
}

/// A KEM secret key, `type || raw` (Kyber1024: 3169 bytes, raw = s_hat || pk || H(pk) || z),
/// held in wiped memory.
public struct KEMSecretKey: Sendable {
    public let keyType: KEMKeyType
    private let bytes: SecretBytes

    /// Parses `type || raw`: `noKeyType`, `badKeyType` or `badLength` otherwise.
    public init<B: ByteView>(serialized serializedBytes: B) throws(KEMError) {
        keyType = try serializedBytes.withBytes { (b) throws(KEMError) in try KEMKeyType.parse(b, as: .secretKey) }
        bytes = SecretBytes(copying: serializedBytes)
    }

    init(keyType: KEMKeyType, validated bytes: SecretBytes) {
        self.keyType = keyType
        self.bytes = bytes
    }

    /// `type || raw`, for storage.
    public func serialize() -> SecretBytes { bytes }

    /// Whether this secret key belongs to `publicKey`: Kyber1024's secret key embeds its public
    /// key (`s_hat || pk || H(pk) || z`). A stored pair that fails this is corrupt. Public data
    /// only is compared.
    public func embeds(_ publicKey: KEMPublicKey) -> Bool {
        guard publicKey.keyType == keyType else { return false }
        switch keyType {
        case .kyber1024:
            let start = 1 + KyberParameters.pkeSecretKeyBytes
            return bytes.withBytes { sk in
                publicKey.serialized.withUnsafeBytes { pk in
                    guard sk.count == 1 + KyberParameters.secretKeyBytes, pk.count == 1 + KyberParameters.publicKeyBytes,
                          let s = sk.baseAddress, let p = pk.baseAddress
                    else { return false }
                    return memcmp(s + start, p + 1, KyberParameters.publicKeyBytes) == 0
                }
            }
        }
    }

    /// The shared secret of `ciphertext`. A ciphertext of the right type and length always
    /// decapsulates: one that was not honestly made for this key gives a pseudorandom secret
    /// (implicit rejection), so the mismatch shows only where that secret is used.
    public func decapsulate(_ ciphertext: KEMCiphertext) throws(KEMError) -> SecretBytes {
        let type = keyType
        return try SecretBytes(count: type.sharedSecretLength) { (secret) throws(KEMError) in
            try bytes.withBytes { (sk) throws(KEMError) in
                try ciphertext.serialized.withBytes { (c) throws(KEMError) in
                    switch (type, ciphertext.keyType) {
                    case (.kyber1024, .kyber1024):
                        try Kyber1024.decapsulate(
                            secretKey: UnsafeRawBufferPointer(rebasing: sk[1...]),
                            ciphertext: UnsafeRawBufferPointer(rebasing: c[1...]), sharedSecret: secret)
                    }
                }
            }
        }
    }

    /// Parses and decapsulates a serialized ciphertext (`noKeyType`, `badKeyType`, `badLength`
    /// for a malformed one, as libsignal's `decapsulate`).
    public func decapsulate<C: ByteView>(serialized ciphertext: C) throws(KEMError) -> SecretBytes {
        try decapsulate(try KEMCiphertext(serialized: ciphertext))
    }
}

extension KEMSecretKey: CustomStringConvertible {
    /// Never prints the secret.
    public var description: String { "KEMSecretKey(\(keyType), redacted)" }
}

/// A KEM key pair.
public struct KEMKeyPair: Sendable {
    public let publicKey: KEMPublicKey
    public let secretKey: KEMSecretKey

    /// A stored pair (for example a Kyber prekey record: public and secret key serialized
    /// apart). The secret key of Kyber1024 embeds its public key; this does not compare them.
    public init(publicKey: KEMPublicKey, secretKey: KEMSecretKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// The key pair of a seed (Kyber1024: the 64 bytes d || z, libcrux
    /// `kyber1024::generate_key_pair(randomness)`). Deterministic: for vectors and tests.
    public init<S: ByteView>(_ type: KEMKeyType = .kyber1024, seed: S) throws(KEMError) {
        var publicBytes = [UInt8](repeating: 0, count: type.serializedLength(of: .publicKey))
        publicBytes[0] = type.rawValue
        let secretBytes = try SecretBytes(count: type.serializedLength(of: .secretKey)) { (sk) throws(KEMError) in
            sk[0] = type.rawValue
            try seed.withBytes { (s) throws(KEMError) in
                guard s.count == type.keyGenerationSeedLength else {
                    throw .badRandomnessLength(expected: type.keyGenerationSeedLength, actual: s.count)
                }
                try withMutableBytes(&publicBytes) { (pk) throws(KEMError) in
                    switch type {
                    case .kyber1024:
                        try Kyber1024.generateKeyPair(
                            seed: s, publicKey: UnsafeMutableRawBufferPointer(rebasing: pk[1...]),
                            secretKey: UnsafeMutableRawBufferPointer(rebasing: sk[1...]))
                    }
                }
            }
        }
        publicKey = KEMPublicKey(keyType: type, validated: publicBytes)
        secretKey = KEMSecretKey(keyType: type, validated: secretBytes)
    }

    /// A fresh key pair from one seed-sized draw of `random` (libsignal `KeyPair::generate`).
    public static func generate(_ type: KEMKeyType = .kyber1024, using random: any RandomSource) throws(KEMError) -> KEMKeyPair {
        var seed = random.draw(type.keyGenerationSeedLength, purpose: .kemKeySeed)
        defer { wipe(&seed) }
        return try KEMKeyPair(type, seed: seed)
    }
}

/// `Array.withUnsafeMutableBytes` with a typed error.
func withMutableBytes<R, E: Error>(_ array: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result: Result<R, E> = array.withUnsafeMutableBytes { buffer in
        do throws(E) {
            return .success(try body(buffer))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// Zeroes a plain array that held secret bytes (a random seed before it is used).
@inline(never)
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress, buffer.count > 0 { sodium_memzero(base, buffer.count) }
    }
}
