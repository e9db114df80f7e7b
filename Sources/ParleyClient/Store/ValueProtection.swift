import CSodium
import Foundation
import ParleyCrypto

/// How secret column values are kept at rest: in the clear (store created without a
/// passphrase), or sealed with XChaCha20-Poly1305 under the Argon2id-derived store key.
///
/// Sealed format: `0x01 || nonce (24 random bytes) || ciphertext || tag (16)`, with the row's
/// `SealContext` as associated data.
enum ValueProtection: Sendable {
    case clear
    case sealed(key: SecretBytes)

    static let sealedVersion: UInt8 = 0x01
    static let nonceSize = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)  // 24
    static let tagSize = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)  // 16

    var isSealed: Bool {
        if case .sealed = self { return true }
        return false
    }

    /// The column value for `plaintext` in the row named by `context`.
    func protect<B: ByteView>(_ plaintext: B, context: SealContext) throws(DeviceStoreError) -> Data {
        switch self {
        case .clear:
            return plaintext.withBytes { Data($0) }
        case .sealed(let key):
            return try Self.seal(plaintext, key: key, context: context)
        }
    }

    /// The plaintext of a column value read from the row named by `context`. A value that does
    /// not open reports `corruptRow` for that row.
    func reveal(_ stored: Data, context: SealContext) throws(DeviceStoreError) -> SecretBytes {
        switch self {
        case .clear:
            return stored.withUnsafeBytes { SecretBytes(copying: $0) }
        case .sealed(let key):
            guard let plaintext = Self.open(stored, key: key, context: context) else {
                throw .corruptRow(table: context.table, key: context.keyDescription, reason: "sealed value does not open")
            }
            return plaintext
        }
    }

    static func seal<B: ByteView>(_ plaintext: B, key: SecretBytes, context: SealContext) throws(DeviceStoreError) -> Data {
        try SodiumSetup.ensureReady()
        let ad = context.associatedData
        var nonce = [UInt8](repeating: 0, count: nonceSize)
        nonce.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
        var status: Int32 = -1
        let out = plaintext.withBytes { message in
            var out = Data(count: 1 + nonceSize + message.count + tagSize)
            out.withUnsafeMutableBytes { (buffer: UnsafeMutableRawBufferPointer) in
                guard let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
                base[0] = sealedVersion
                nonce.withUnsafeBytes { n in
                    if let nb = n.baseAddress { (base + 1).update(from: nb.assumingMemoryBound(to: UInt8.self), count: nonceSize) }
                }
                var written: UInt64 = 0
                key.withBytes { k in
                    ad.withUnsafeBytes { a in
                        guard let keyBase = k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count == KeyDerivationParameters.keySize
                        else { return }
                        status = crypto_aead_xchacha20poly1305_ietf_encrypt(
                            base + 1 + nonceSize, &written,
                            message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                            a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count),
                            nil, base + 1, keyBase)
                    }
                }
                if written != UInt64(message.count + tagSize) { status = -1 }
            }
            return out
        }
        guard status == 0 else { throw .cryptoUnavailable }
        return out
    }

    /// nil when the value is malformed or its tag does not verify under `key` and `context`.
    static func open(_ stored: Data, key: SecretBytes, context: SealContext) -> SecretBytes? {
        guard stored.count >= 1 + nonceSize + tagSize, stored.first == sealedVersion else { return nil }
        let ad = context.associatedData
        let plaintextSize = stored.count - 1 - nonceSize - tagSize
        return stored.withUnsafeBytes { (sealed: UnsafeRawBufferPointer) -> SecretBytes? in
            guard let base = sealed.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
            do {
                return try SecretBytes(count: plaintextSize) { (out) throws(OpenFailure) in
                    var written: UInt64 = 0
                    // A zero-length plaintext still needs a valid output pointer for libsodium.
                    var scratch: UInt8 = 0
                    let status = key.withBytes { k in
                        ad.withUnsafeBytes { a in
                            withUnsafeMutablePointer(to: &scratch) { fallback -> Int32 in
                                guard let keyBase = k.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return -1 }
                                return crypto_aead_xchacha20poly1305_ietf_decrypt(
                                    out.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? fallback, &written, nil,
                                    base + 1 + nonceSize, UInt64(sealed.count - 1 - nonceSize),
                                    a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count),
                                    base + 1, keyBase)
                            }
                        }
                    }
                    guard status == 0, written == UInt64(plaintextSize) else { throw OpenFailure() }
                }
            } catch {
                return nil
            }
        }
    }

    private struct OpenFailure: Error {}
}
