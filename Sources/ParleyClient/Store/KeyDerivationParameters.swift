import CSodium
import ParleyCrypto

/// The Argon2id parameters and salt a sealed store was created with, as kept in its `meta`
/// table. They are read back from a file an attacker may have edited, so `validated` bounds
/// them (a huge memory limit would otherwise be a denial of service at unlock).
struct KeyDerivationParameters: Sendable, Equatable {
    static let algorithm = "argon2id13"
    static let saltSize = Int(crypto_pwhash_argon2id_SALTBYTES)  // 16
    static let keySize = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)  // 32

    let opsLimit: UInt64
    let memLimit: UInt64
    let salt: [UInt8]

    /// Fresh parameters for a new store: `cost`'s limits and a random 16-byte salt.
    static func fresh(cost: KeyDerivationCost) throws(DeviceStoreError) -> KeyDerivationParameters {
        try SodiumSetup.ensureReady()
        var salt = [UInt8](repeating: 0, count: saltSize)
        salt.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
        return KeyDerivationParameters(opsLimit: cost.opsLimit, memLimit: cost.memLimit, salt: salt)
    }

    /// Checks parameters read from disk: the limits must lie between the interactive and the
    /// sensitive preset, the salt must be 16 bytes.
    func validated() throws(DeviceStoreError) -> KeyDerivationParameters {
        guard salt.count == Self.saltSize else { throw .corruptMetadata("kdf salt is \(salt.count) bytes") }
        let ops = KeyDerivationCost.interactive.opsLimit...KeyDerivationCost.sensitive.opsLimit
        let mem = KeyDerivationCost.interactive.memLimit...KeyDerivationCost.sensitive.memLimit
        guard ops.contains(opsLimit), mem.contains(memLimit) else {
            throw .corruptMetadata("kdf limits out of range (ops \(opsLimit), mem \(memLimit))")
        }
        return self
    }

    /// Runs Argon2id over `passphrase`. The result is the store key; it is wiped when dropped.
    func deriveKey(from passphrase: Passphrase) throws(DeviceStoreError) -> SecretBytes {
        try SodiumSetup.ensureReady()
        let ops = opsLimit
        let mem = Int(clamping: memLimit)
        let salt = self.salt
        return try SecretBytes(count: Self.keySize) { (out) throws(DeviceStoreError) in
            var empty: CChar = 0
            let status = passphrase.secret.withBytes { pass in
                salt.withUnsafeBytes { saltBytes -> Int32 in
                    guard let outBase = out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                          let saltBase = saltBytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
                    else { return -1 }
                    return withUnsafeMutablePointer(to: &empty) { fallback in
                        crypto_pwhash(
                            outBase, UInt64(out.count),
                            pass.baseAddress?.assumingMemoryBound(to: CChar.self) ?? UnsafePointer(fallback), UInt64(pass.count),
                            saltBase, ops, mem, crypto_pwhash_ALG_ARGON2ID13)
                    }
                }
            }
            guard status == 0 else { throw .keyDerivationFailed }
        }
    }
}
