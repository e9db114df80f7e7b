import ParleyCrypto

/// A random source that serves a transcript's recorded draws in order. A request of the wrong
/// size, or one past the end, is recorded as an error (and served zeros) so the vector fails
/// with a clear message instead of silently diverging.
///
/// While a rejected message is being attempted (`duringReject`), draws come from a scratch
/// source instead and the recorded position does not move: the transcripts do not record the
/// draws a failed decryption makes (shared spec, "Rejected messages"), so such a draw must
/// neither consume a recorded one nor count as a draw past the end.
final class ScriptedRandom: RandomSource {
    private let draws: [[UInt8]]
    private(set) var position = 0
    private(set) var errors: [String] = []
    /// Draws served from the scratch source (informative).
    private(set) var scratchDraws = 0
    private var rejecting = false
    let owner: String

    init(owner: String, draws: [[UInt8]]) {
        self.owner = owner
        self.draws = draws
    }

    func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
        if rejecting {
            scratchDraws += 1
            return Self.scratch(count, index: scratchDraws)
        }
        guard position < draws.count else {
            errors.append("\(owner) drew more than its \(draws.count) recorded draws (\(purpose.rawValue))")
            return [UInt8](repeating: 0, count: count)
        }
        let value = draws[position]
        position += 1
        guard value.count == count else {
            errors.append("\(owner) draw \(position - 1) has \(value.count) bytes, \(count) requested (\(purpose.rawValue))")
            return [UInt8](repeating: 0, count: count)
        }
        return value
    }

    /// Runs `body` (one reject attempt) with every draw served from the scratch source.
    func duringReject<R>(_ body: () throws -> R) rethrows -> R {
        rejecting = true
        defer { rejecting = false }
        return try body()
    }

    var remaining: Int { draws.count - position }

    /// Deterministic scratch bytes (SHA-256 of a counter, repeated as needed), so a runner's
    /// output does not depend on the system's randomness.
    private static func scratch(_ count: Int, index: Int) -> [UInt8] {
        var out: [UInt8] = []
        var block: UInt8 = 0
        while out.count < count {
            out += SHA256.hash(Array("parley scratch draw \(index)".utf8) + [block])
            block &+= 1
        }
        return Array(out.prefix(count))
    }
}
