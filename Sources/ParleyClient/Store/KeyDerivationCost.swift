import CSodium

/// How much work Argon2id does to turn a passphrase into the store key. The parameters are
/// stored in the file at creation, so opening always uses the ones the store was made with.
///
/// The default is `.moderate` (libsodium's OPSLIMIT_MODERATE = 3 passes over MEMLIMIT_MODERATE =
/// 256 MiB, about 0.5–1 s on a laptop core): the passphrase only matters once the file has been
/// stolen, so the attacker guesses offline and every guess should cost as much as a user will
/// wait for once per unlock. `.interactive` (2 passes, 64 MiB) is for constrained devices and
/// for tests; `.sensitive` (4 passes, 1 GiB, several seconds) for users who accept the wait.
public enum KeyDerivationCost: Sendable, Equatable {
    case interactive
    case moderate
    case sensitive

    var opsLimit: UInt64 {
        switch self {
        case .interactive: return UInt64(crypto_pwhash_argon2id_opslimit_interactive())
        case .moderate: return UInt64(crypto_pwhash_argon2id_opslimit_moderate())
        case .sensitive: return UInt64(crypto_pwhash_argon2id_opslimit_sensitive())
        }
    }

    var memLimit: UInt64 {
        switch self {
        case .interactive: return UInt64(crypto_pwhash_argon2id_memlimit_interactive())
        case .moderate: return UInt64(crypto_pwhash_argon2id_memlimit_moderate())
        case .sensitive: return UInt64(crypto_pwhash_argon2id_memlimit_sensitive())
        }
    }
}
