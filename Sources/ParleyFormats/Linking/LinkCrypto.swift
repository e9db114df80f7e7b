import CSodium
import Foundation
import ParleyCrypto

/// The encryption of the provisioning blob between the two devices of a link.
///
///     k   = HKDF-SHA256(ikm = X25519(E, X), salt = UTF-8(code), info = "Parley link v1", 32 bytes)
///     ad  = "Parley link v1" || u16(len code) || code || E.pub (33) || X.pub (33)
///     blob = 0x01 || nonce (24, random) || XChaCha20-Poly1305(k, nonce, ad, payload) (ciphertext || tag 16)
///
/// E is the existing device's ephemeral key (its public half travels in the link string, never
/// through the relay); X is the new device's provisioning key (its public half is the identity key
/// of the claim). Binding the code and both public keys means a blob made for another code,
/// another claim or another link string does not open.
package enum LinkCrypto {
    package static let info = "Parley link v1"
    package static let blobVersion: UInt8 = 1
    package static let keySize = 32
    package static let nonceSize = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)  // 24
    package static let tagSize = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)  // 16
    package static let overhead = 1 + nonceSize + tagSize

    package static let sodiumReady: Bool = sodium_init() >= 0

    /// The blob key, from one side's private key and the other side's public key.
    package static func key(own: PrivateKey, their: PublicKey, code: String) throws(LinkError) -> SecretBytes {
        do {
            let shared = try own.agreement(with: their)
            return try HKDF.deriveSecret(ikm: shared, salt: Array(code.utf8), info: Array(info.utf8), length: keySize)
        } catch {
            // A small-order key from the other side: nothing sensible can be derived.
            throw .blobAuthenticationFailed
        }
    }

    package static func associatedData(code: String, ephemeral: PublicKey, provisioning: PublicKey) -> [UInt8] {
        var ad = Array(info.utf8)
        let codeBytes = Array(code.utf8)
        ad.append(UInt8(truncatingIfNeeded: codeBytes.count >> 8))
        ad.append(UInt8(truncatingIfNeeded: codeBytes.count))
        ad += codeBytes
        ad += ephemeral.serialized
        ad += provisioning.serialized
        return ad
    }

    /// Encrypts `payload` under `key`.
    package static func seal(_ payload: SecretBytes, key: SecretBytes, associatedData ad: [UInt8]) throws(LinkError) -> Data {
        guard sodiumReady, key.count == keySize else { throw .payloadMalformed("encryption unavailable") }
        let nonce = SystemRandom.shared.draw(nonceSize, purpose: .other)
        var out = [UInt8](repeating: 0, count: 1 + nonceSize + payload.count + tagSize)
        out[0] = blobVersion
        out.replaceSubrange(1..<(1 + nonceSize), with: nonce)
        var written: UInt64 = 0
        let status: Int32 = out.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return -1 }
            return payload.withBytes { message in
                key.withBytes { k in
                    guard let keyBase = k.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return -1 }
                    return ad.withUnsafeBufferPointer { a in
                        crypto_aead_xchacha20poly1305_ietf_encrypt(
                            base + 1 + nonceSize, &written,
                            message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                            a.baseAddress, UInt64(a.count), nil, base + 1, keyBase)
                    }
                }
            }
        }
        guard status == 0, written == UInt64(payload.count + tagSize) else {
            throw .payloadMalformed("encryption failed")
        }
        return Data(out)
    }

    /// Decrypts and authenticates a blob. Anything that does not authenticate (wrong version,
    /// too short, tampered, other key or associated data) is `.blobAuthenticationFailed`.
    package static func open(_ blob: Data, key: SecretBytes, associatedData ad: [UInt8]) throws(LinkError) -> SecretBytes {
        guard sodiumReady, key.count == keySize else { throw .blobAuthenticationFailed }
        let bytes = [UInt8](blob)
        guard bytes.count >= overhead, bytes[0] == blobVersion else { throw .blobAuthenticationFailed }
        let plainCount = bytes.count - overhead
        var status: Int32 = -1
        let plaintext = SecretBytes(count: plainCount) { out in
            var written: UInt64 = 0
            status = bytes.withUnsafeBufferPointer { input in
                guard let base = input.baseAddress else { return -1 }
                return key.withBytes { k in
                    guard let keyBase = k.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return -1 }
                    return ad.withUnsafeBufferPointer { a in
                        crypto_aead_xchacha20poly1305_ietf_decrypt(
                            out.baseAddress?.assumingMemoryBound(to: UInt8.self), &written, nil,
                            base + 1 + nonceSize, UInt64(bytes.count - 1 - nonceSize),
                            a.baseAddress, UInt64(a.count), base + 1, keyBase)
                    }
                }
            }
            if status == 0 && written != UInt64(plainCount) { status = -1 }
        }
        guard status == 0 else { throw .blobAuthenticationFailed }
        return plaintext
    }
}
