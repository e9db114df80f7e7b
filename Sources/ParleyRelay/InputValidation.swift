import Foundation
import ParleyWire

/// Size and range checks on client-supplied key material and ciphertexts.
enum InputValidation {
    static func check(_ keys: NewDeviceKeys) throws(RelayError) {
        try checkKey(keys.identityKey, "identityKey")
        try check(keys.signedPreKey)
        try check(keys.oneTimePreKeys)
        if let name = keys.name, name.utf8.count > RelayLimits.maxDeviceNameBytes {
            throw .invalidField("device name longer than \(RelayLimits.maxDeviceNameBytes) bytes")
        }
    }

    static func check(_ key: SignedPreKey) throws(RelayError) {
        try checkKey(key.publicKey, "signedPreKey.publicKey")
        try checkKey(key.signature, "signedPreKey.signature")
    }

    static func check(_ keys: [OneTimePreKey]) throws(RelayError) {
        guard keys.count <= RelayLimits.maxOneTimePreKeysPerUpload else {
            throw .tooManyItems("at most \(RelayLimits.maxOneTimePreKeysPerUpload) one-time prekeys per request")
        }
        var seen = Set<UInt32>()
        for key in keys {
            try checkKey(key.publicKey, "oneTimePreKeys.publicKey")
            guard seen.insert(key.keyId).inserted else { throw .invalidField("duplicate one-time prekey id \(key.keyId)") }
        }
    }

    static func checkKey(_ bytes: Data, _ field: String) throws(RelayError) {
        guard !bytes.isEmpty, bytes.count <= RelayLimits.maxKeyBytes else {
            throw .invalidField("\(field) must be 1...\(RelayLimits.maxKeyBytes) bytes")
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
