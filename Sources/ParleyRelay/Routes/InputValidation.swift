import Foundation
import ParleyCrypto
import ParleyWire

/// Checks on client-supplied key material and ciphertexts. Every upload of keys (registration, link claim,
/// `PUT /v1/keys`) goes through here: public keys are libsignal-serialized Curve25519 keys (33 bytes, type byte
/// 0x05), a signed prekey's signature is 64 bytes and verifies (XEdDSA) under the device's identity key, so a
/// bundle the relay hands out always has a signed prekey its identity key signed.
enum InputValidation {
    /// Registration and link claim: identity key, signed prekey (verified under that identity), one-time
    /// prekeys, device name.
    static func check(_ keys: NewDeviceKeys) throws(RelayError) {
        let identity = try publicKey(keys.identityKey, "identityKey")
        try check(keys.signedPreKey, signedBy: identity)
        try check(keys.oneTimePreKeys)
        try checkKyber(lastResort: keys.kyberLastResortPreKey, oneTime: [])
        try verifyKyber(lastResort: keys.kyberLastResortPreKey, oneTime: [], identityKey: keys.identityKey)
        if let name = keys.name, name.utf8.count > RelayLimits.maxDeviceNameBytes {
            throw .invalidField("device name longer than \(RelayLimits.maxDeviceNameBytes) bytes")
        }
    }

    /// A public key in libsignal's serialization (`0x05 || u`, 33 bytes).
    @discardableResult
    static func publicKey(_ bytes: Data, _ field: String) throws(RelayError) -> PublicKey {
        do {
            return try PublicKey(serialized: Array(bytes))
        } catch {
            throw .invalidField("\(field) must be a Curve25519 public key (33 bytes, type 0x05)")
        }
    }

    /// The signed prekey's formats (public key, 64-byte signature), without its signature check.
    static func checkFormat(_ key: SignedPreKey) throws(RelayError) {
        try publicKey(key.publicKey, "signedPreKey.publicKey")
        guard key.signature.count == XEdDSA.signatureSize else {
            throw .invalidField("signedPreKey.signature must be \(XEdDSA.signatureSize) bytes")
        }
    }

    /// The signed prekey's formats, and its signature (XEdDSA over the serialized public key) under `identity`.
    static func check(_ key: SignedPreKey, signedBy identity: PublicKey) throws(RelayError) {
        try checkFormat(key)
        guard XEdDSA.verify(Array(key.signature), of: Array(key.publicKey), by: identity) else {
            throw .invalidField("signedPreKey.signature does not verify under the identity key")
        }
    }

    /// `check(_:signedBy:)` with the identity key as stored (bytes).
    static func check(_ key: SignedPreKey, signedBy identityKey: Data) throws(RelayError) {
        try check(key, signedBy: try publicKey(identityKey, "identityKey"))
    }

    static func check(_ keys: [OneTimePreKey]) throws(RelayError) {
        guard keys.count <= RelayLimits.maxOneTimePreKeysPerUpload else {
            throw .tooManyItems("at most \(RelayLimits.maxOneTimePreKeysPerUpload) one-time prekeys per request")
        }
        var seen = Set<UInt32>()
        for key in keys {
            try publicKey(key.publicKey, "oneTimePreKeys.publicKey")
            guard seen.insert(key.keyId).inserted else { throw .invalidField("duplicate one-time prekey id \(key.keyId)") }
        }
    }

    /// Kyber prekeys: a Kyber1024 public key (`0x08 ||` 1568 bytes, libsignal's encoding), a
    /// 64-byte signature, at most `maxKyberOneTimePreKeysPerUpload` one-time keys with distinct ids,
    /// none with the id of the last-resort key.
    static func checkKyber(lastResort: KyberPreKey?, oneTime: [KyberPreKey]) throws(RelayError) {
        guard oneTime.count <= RelayLimits.maxKyberOneTimePreKeysPerUpload else {
            throw .tooManyItems("at most \(RelayLimits.maxKyberOneTimePreKeysPerUpload) one-time Kyber prekeys per request")
        }
        var seen = Set<UInt32>()
        if let lastResort {
            try check(lastResort, "kyberLastResortPreKey")
            seen.insert(lastResort.keyId)
        }
        for key in oneTime {
            try check(key, "kyberOneTimePreKeys")
            guard seen.insert(key.keyId).inserted else { throw .invalidField("duplicate Kyber prekey id \(key.keyId)") }
        }
    }

    static func check(_ key: KyberPreKey, _ field: String) throws(RelayError) {
        do { _ = try KEMPublicKey(serialized: key.publicKey) } catch {
            throw .invalidField("\(field).publicKey is not a Kyber1024 public key (\(error.reason ?? "\(error)"))")
        }
        guard key.signature.count == XEdDSA.signatureSize else { throw .invalidField("\(field).signature must be 64 bytes") }
    }

    /// Every Kyber prekey must be signed by `identityKey` (XEdDSA over its 1569 serialized bytes),
    /// as initiators check it: a key that does not verify would only make their sessions fail.
    static func verifyKyber(lastResort: KyberPreKey?, oneTime: [KyberPreKey], identityKey: Data) throws(RelayError) {
        let keys = (lastResort.map { [$0] } ?? []) + oneTime
        guard !keys.isEmpty else { return }
        let identity = try publicKey(identityKey, "identityKey")
        for key in keys where !XEdDSA.verify(Array(key.signature), of: Array(key.publicKey), by: identity) {
            throw .invalidField("the signature of Kyber prekey \(key.keyId) does not verify under the identity key")
        }
    }

    static func checkCiphertext(type: Int, content: Data) throws(RelayError) {
        guard (0...255).contains(type) else { throw .invalidField("type must be 0...255") }
        guard !content.isEmpty else { throw .invalidField("content must not be empty") }
        guard content.count <= RelayLimits.maxCiphertextBytes else {
            throw .payloadTooLarge("ciphertext larger than \(RelayLimits.maxCiphertextBytes) bytes")
        }
    }
}
