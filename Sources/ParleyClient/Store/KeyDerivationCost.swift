import CSodium

/// How much work Argon2id does to turn a passphrase into the store key. The parameters are
/// stored in the file at creation, so opening always uses the ones the store was made with.
///
/// The default is `.standard`: 2 passes over 192 MiB (about 0.35-0.4 s, and under 240 MB of peak memory
/// for `parley unlock`, on the reference 2-core machine; BENCHMARKS.md has the figures). The passphrase
/// only matters once the file has been stolen, so the attacker guesses offline and every guess should
/// cost as much as a user will wait for once per login session; memory is what makes guessing on GPUs
/// and ASICs expensive, so the budget goes to memory rather than passes (RFC 9106 sec. 4: choose the
/// memory first, then the passes that fit the time). `.moderate` (libsodium's 3 passes over 256 MiB,
/// 0.75 s and 297 MB there) was the default before and stores made with it keep opening with it (the
/// parameters are stored per store). `.interactive` (2 passes, 64 MiB) is for constrained devices and
/// for tests; `.sensitive` (4 passes, 1 GiB, several seconds) for users who accept the wait.
public enum KeyDerivationCost: Sendable, Equatable {
    case interactive
    case standard
    case moderate
    case sensitive

    /// `.standard`'s memory: 192 MiB, so that one unlock stays under about 300 MB of peak memory with
    /// the client's own ~35 MB.
    static let standardMemLimit: UInt64 = 192 << 20
    /// `.standard`'s passes: 2 (Argon2id's minimum recommended with this much memory), about 0.4 s.
    static let standardOpsLimit: UInt64 = 2

    var opsLimit: UInt64 {
        switch self {
        case .interactive: return UInt64(crypto_pwhash_argon2id_opslimit_interactive())
        case .standard: return Self.standardOpsLimit
        case .moderate: return UInt64(crypto_pwhash_argon2id_opslimit_moderate())
        case .sensitive: return UInt64(crypto_pwhash_argon2id_opslimit_sensitive())
        }
    }

    var memLimit: UInt64 {
        switch self {
        case .interactive: return UInt64(crypto_pwhash_argon2id_memlimit_interactive())
        case .standard: return Self.standardMemLimit
        case .moderate: return UInt64(crypto_pwhash_argon2id_memlimit_moderate())
        case .sensitive: return UInt64(crypto_pwhash_argon2id_memlimit_sensitive())
        }
    }
}
