import CSodium

/// Where keys, signature randomness and sender-key seeds come from. Production code uses
/// `SystemRandom`; tests and the conformance runner inject deterministic sources.
///
/// Every request is one *draw*: a caller asks for exactly the bytes one key or nonce needs,
/// so a replayed list of draws lines up with the calls that consumed them.
public protocol RandomSource: AnyObject {
    /// Returns `count` random bytes for one purpose.
    func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8]
}

/// Why randomness is being drawn. Deterministic sources use it to check they are serving the
/// draw a transcript expects.
public enum RandomPurpose: String, Sendable {
    case privateKey
    case signatureNonce
    case senderKeyId
    case senderChainSeed
    /// A KEM key pair's seed (Kyber1024: d || z, 64 bytes).
    case kemKeySeed
    /// A KEM encapsulation's randomness (Kyber1024: m, 32 bytes).
    case kemEncapsulation
    case other
}

/// The operating system's CSPRNG, through libsodium's `randombytes_buf`.
public final class SystemRandom: RandomSource, @unchecked Sendable {
    public static let shared = SystemRandom()

    public init() { _ = Sodium.ready }

    public func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buf in
            if let base = buf.baseAddress, count > 0 { randombytes_buf(base, count) }
        }
        return out
    }
}
