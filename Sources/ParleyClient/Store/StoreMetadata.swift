import Foundation
import GRDB
import ParleyCrypto
import ParleyProtocol

/// The `meta` table: what kind of file this is and how its secret values are protected.
///
/// | name | value |
/// | --- | --- |
/// | `format` | `parley-client-store` |
/// | `sealing` | `none`, or `argon2id13+xchacha20poly1305` |
/// | `kdf_opslimit`, `kdf_memlimit` | Argon2id passes and memory in bytes (sealed stores) |
/// | `kdf_salt` | 16 random bytes (sealed stores) |
/// | `check` | a known constant sealed under the store key (sealed stores) |
/// | `wrapped_key` | after a passphrase change: the store key sealed under the Argon2id output of the new passphrase |
/// | `session_policy` | `requirePostQuantum` (new stores) or `allowClassical` (stores created before PQXDH) |
enum StoreMetadata {
    static let sessionPolicyName = "session_policy"

    static let format = "parley-client-store"
    static let sealingNone = "none"
    static let sealingArgon2XChaCha = "argon2id13+xchacha20poly1305"
    static let checkPlaintext = Array("parley-client-store check value v1".utf8)
    static let checkContext = SealContext(table: "meta", key: ["check"])
    static let wrappedKeyContext = SealContext(table: "meta", key: ["wrapped_key"])
    /// The meta rows a passphrase change writes, in the order it writes them (all in one transaction).
    static let passphraseRows = ["kdf_opslimit", "kdf_memlimit", "kdf_salt", "wrapped_key"]

    /// Writes the metadata of a new store and returns its value protection.
    static func initialise(
        _ db: Database, passphrase: Passphrase?, cost: KeyDerivationCost
    ) throws -> ValueProtection {
        try put(db, "format", format)
        try putSessionPolicy(db, .default)
        guard let passphrase else {
            try put(db, "sealing", sealingNone)
            return .clear
        }
        let parameters = try KeyDerivationParameters.fresh(cost: cost)
        let key = try parameters.deriveKey(from: passphrase)
        let check = try ValueProtection.seal(checkPlaintext, key: key, context: checkContext)
        try put(db, "sealing", sealingArgon2XChaCha)
        try put(db, "kdf_opslimit", Int64(clamping: parameters.opsLimit))
        try put(db, "kdf_memlimit", Int64(clamping: parameters.memLimit))
        try put(db, "kdf_salt", Data(parameters.salt))
        try put(db, "check", check)
        return .sealed(key: key)
    }

    /// Reads the metadata of an existing store and unlocks it with `unlock`.
    ///
    /// With a passphrase: Argon2id over it with the stored parameters and salt gives the key-encryption
    /// key; if the store has a `wrapped_key` (its passphrase was changed) that key opens it and the result
    /// is the store key, else (the passphrase the store was created with) it is the store key itself.
    /// With a `StoreKey`: no Argon2id. Either way the sealed `check` value must open under the store key.
    static func unlock(_ db: Database, unlock: StoreUnlock?) throws -> ValueProtection {
        guard try db.tableExists("meta"), try string(db, "format") == format else { throw DeviceStoreError.notInitialised }
        switch try string(db, "sealing") {
        case sealingNone:
            guard unlock == nil else { throw DeviceStoreError.notSealed }
            return .clear
        case sealingArgon2XChaCha:
            guard let unlock else { throw DeviceStoreError.passphraseRequired }
            guard let check = try data(db, "check") else { throw DeviceStoreError.corruptMetadata("missing check value") }
            let key: SecretBytes
            switch unlock {
            case .passphrase(let passphrase):
                let derived = try parameters(db).deriveKey(from: passphrase)
                if let wrapped = try data(db, "wrapped_key") {
                    guard let unwrapped = ValueProtection.open(wrapped, key: derived, context: wrappedKeyContext),
                          unwrapped.count == KeyDerivationParameters.keySize
                    else { throw DeviceStoreError.wrongPassphrase }
                    key = unwrapped
                } else {
                    key = derived
                }
            case .key(let storeKey):
                key = storeKey.secret
            }
            guard let opened = ValueProtection.open(check, key: key, context: checkContext),
                  ConstantTime.equals(opened, checkPlaintext)
            else {
                if case .key = unlock { throw DeviceStoreError.storeKeyMismatch }
                throw DeviceStoreError.wrongPassphrase
            }
            return .sealed(key: key)
        case let other:
            throw DeviceStoreError.corruptMetadata("unknown sealing \(other ?? "(missing)")")
        }
    }

    /// The stored Argon2id parameters, bounded (`KeyDerivationParameters.validated`).
    static func parameters(_ db: Database) throws -> KeyDerivationParameters {
        guard let ops = try integer(db, "kdf_opslimit"), let mem = try integer(db, "kdf_memlimit"),
              let salt = try data(db, "kdf_salt"), ops > 0, mem > 0
        else { throw DeviceStoreError.corruptMetadata("missing or malformed kdf parameters") }
        return try KeyDerivationParameters(opsLimit: UInt64(ops), memLimit: UInt64(mem), salt: Array(salt)).validated()
    }

    /// Writes the rows of a passphrase change: `parameters` (new salt, limits) and `wrapped`, the store
    /// key sealed under the new passphrase's Argon2id output. `interruptAfter` (tests only) throws after
    /// that many rows, inside the caller's transaction, to show that a failure half-way changes nothing.
    static func putPassphrase(
        _ db: Database, parameters: KeyDerivationParameters, wrapped: Data, interruptAfter: Int? = nil
    ) throws {
        let values: [any DatabaseValueConvertible] = [
            Int64(clamping: parameters.opsLimit), Int64(clamping: parameters.memLimit), Data(parameters.salt), wrapped,
        ]
        for (index, (name, value)) in zip(passphraseRows, values).enumerated() {
            if let interruptAfter, index == interruptAfter { throw DeviceStoreError.invalidArgument("interrupted (test)") }
            try put(db, name, value)
        }
    }

    // MARK: session policy

    static func sessionPolicy(_ db: Database) throws -> SessionPolicy {
        switch try string(db, sessionPolicyName) {
        case "requirePostQuantum": return .requirePostQuantum
        case "allowClassical": return .allowClassical
        case let other: throw DeviceStoreError.corruptMetadata("unknown session policy \(other ?? "(missing)")")
        }
    }

    static func putSessionPolicy(_ db: Database, _ policy: SessionPolicy) throws {
        try put(db, sessionPolicyName, policy.requirePostQuantum ? "requirePostQuantum" : "allowClassical")
    }

    // MARK: rows

    private static func put(_ db: Database, _ name: String, _ value: some DatabaseValueConvertible) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", arguments: [name, value])
    }

    private static func value(_ db: Database, _ name: String) throws -> DatabaseValue? {
        try DatabaseValue.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [name])
    }

    private static func string(_ db: Database, _ name: String) throws -> String? {
        try value(db, name).flatMap { String.fromDatabaseValue($0) }
    }

    private static func integer(_ db: Database, _ name: String) throws -> Int64? {
        try value(db, name).flatMap { Int64.fromDatabaseValue($0) }
    }

    private static func data(_ db: Database, _ name: String) throws -> Data? {
        try value(db, name).flatMap { Data.fromDatabaseValue($0) }
    }
}
