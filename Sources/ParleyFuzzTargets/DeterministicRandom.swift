import ParleyCrypto

/// A deterministic random source (SplitMix64), so that every fuzz input runs the same way each
/// time and a finding reproduces. `state` can be saved and restored: a draw made by an operation
/// that failed is handed out again, so a rejected message does not shift the keys a party draws
/// later (what the conformance runner calls serving a reject attempt from a scratch source).
public final class DeterministicRandom: RandomSource {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            var word = next()
            for _ in 0..<8 where out.count < count {
                out.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return out
    }

    public func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
