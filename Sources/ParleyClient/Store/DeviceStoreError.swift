/// Why a `DeviceStore` operation failed. Each case says what the caller can act on; none carries
/// a secret or a decrypted value.
public enum DeviceStoreError: Error, Equatable, Sendable {
    /// The passphrase does not open this store (the sealed check value did not verify).
    case wrongPassphrase
    /// A `StoreKey` (e.g. one cached by `parley unlock`) was given that does not open this store (the
    /// store was replaced or its key changed); unlock it with the passphrase instead.
    case storeKeyMismatch
    /// The store is sealed with a passphrase and none was given.
    case passphraseRequired
    /// A passphrase was given for a store that was created without one (values are in the clear).
    case notSealed
    /// `create` was asked for a path that already holds a file.
    case alreadyExists(path: String)
    /// `open` was asked for a path that holds no file.
    case notFound(path: String)
    /// The file is a database, but not an initialised device store (no metadata or no identity).
    case notInitialised
    /// The file was written by a newer version of the client (migrations this build does not
    /// know were applied); it is left untouched.
    case schemaTooNew(unknownMigrations: [String])
    /// One row failed to decode or unseal (bit rot, tampering, or a row moved to another key).
    /// Only that row is unusable; the rest of the store keeps working.
    case corruptRow(table: String, key: String, reason: String)
    /// A sealed row is older than the store's record of it (or was deleted and came back): it was
    /// restored from an earlier copy of the file. It is refused and left as it is; discard it with
    /// `discardRolledBackRow(table:key:)` (a session then starts anew, and the peer repairs).
    case rolledBack(table: String, key: String)
    /// The store's ledger of sealed rows does not match the digest sealed in its metadata: rows were
    /// restored together with their ledger entries from an earlier copy. Nothing is opened;
    /// `DeviceStore.resetAfterRollback(at:passphrase:)` discards the key state that may be stale.
    case storeRolledBack
    /// The store's metadata (sealing parameters, salt, check value) is missing or malformed.
    case corruptMetadata(String)
    /// Argon2id could not run (usually: not enough memory for the stored parameters).
    case keyDerivationFailed
    /// libsodium could not be initialised.
    case cryptoUnavailable
    /// The caller passed a value the store cannot accept (for example a negative page size, or
    /// a message for a conversation that does not exist).
    case invalidArgument(String)
    /// SQLite reported an error (I/O, disk full, locked, constraint...). `code` is the SQLite
    /// extended result code.
    case database(code: Int32, message: String)
    /// A file-system operation around the database failed (creating the file, permissions).
    case io(path: String, errno: Int32)
}

extension DeviceStoreError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .wrongPassphrase: return "wrong passphrase"
        case .storeKeyMismatch: return "the cached store key does not open this store"
        case .passphraseRequired: return "the store is sealed: a passphrase is required"
        case .notSealed: return "the store is not sealed with a passphrase"
        case .alreadyExists(let path): return "a file already exists at \(path)"
        case .notFound(let path): return "no store at \(path)"
        case .notInitialised: return "not an initialised device store"
        case .schemaTooNew(let unknown): return "store schema is newer than this client: \(unknown.joined(separator: ", "))"
        case .corruptRow(let table, let key, let reason): return "corrupt row \(table)[\(key)]: \(reason)"
        case .rolledBack(let table, let key): return "row \(table)[\(key)] was restored from an older copy of the store"
        case .storeRolledBack: return "the store's sealed rows were restored from an older copy of the store"
        case .corruptMetadata(let what): return "corrupt store metadata: \(what)"
        case .keyDerivationFailed: return "key derivation (Argon2id) failed"
        case .cryptoUnavailable: return "libsodium could not be initialised"
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .database(let code, let message): return "SQLite error \(code): \(message)"
        case .io(let path, let errno): return "I/O error \(errno) on \(path)"
        }
    }
}
