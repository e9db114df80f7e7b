import ParleyCrypto

/// A random source that serves a transcript's recorded draws in order. A request of the wrong
/// size, or one past the end, is recorded as an error (and served zeros) so the vector fails
/// with a clear message instead of silently diverging.
final class ScriptedRandom: RandomSource {
    private let draws: [[UInt8]]
    private(set) var position = 0
    private(set) var errors: [String] = []
    let owner: String

    init(owner: String, draws: [[UInt8]]) {
        self.owner = owner
        self.draws = draws
    }

    func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
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

    /// Rewinds after a rejected message: the transcripts do not record the draws a failed
    /// decryption made.
    func rewind(to mark: Int) { position = mark }

    var remaining: Int { draws.count - position }
}
