import CSodium

/// Scratch memory for one Kyber operation: the polynomials, the accumulator and the byte
/// buffers live in one allocation, made when the operation starts and wiped (it holds noise,
/// secret-key coefficients and messages) and freed when it ends. About 7.5 KB.
struct KyberWorkspace {
    typealias Poly = KyberArithmetic.Poly

    /// Polynomials 0..<7 for the operation's values (0..<4 a vector, 4..<7 single polynomials);
    /// poly 7 is the accumulator, 8 the matrix entry, which has `entrySlack` coefficients of
    /// room after it for the branch-free rejection sampler.
    static let polyCount = 9
    static let entrySlack = 16
    static let xofBytes = KyberSampling.xofSecondBytes
    static let noiseBytes = KyberParameters.noiseBytes
    /// Room for the KEM layer's own values (hashes, messages, keys, the re-encrypted
    /// ciphertext of decapsulation).
    static let kemBytes = 8 * 32 + KyberParameters.ciphertextBytes

    private static let polyOffset = 0
    private static let xofOffset = polyOffset + (polyCount * 256 + entrySlack) * 2
    private static let noiseOffset = xofOffset + xofBytes
    private static let kemOffset = noiseOffset + noiseBytes
    static let byteCount = kemOffset + kemBytes

    let base: UnsafeMutableRawPointer

    func poly(_ index: Int) -> Poly {
        (base + Self.polyOffset).assumingMemoryBound(to: Int16.self) + 256 * index
    }
    var accumulator: Poly { poly(7) }
    /// A matrix entry, with `entrySlack` writable coefficients after its 256.
    var entry: Poly { poly(8) }
    var xofBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base + Self.xofOffset, count: Self.xofBytes) }
    var noiseBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base + Self.noiseOffset, count: Self.noiseBytes) }
    /// 32-byte slot `index` (0..<8) of the KEM area.
    func slot(_ index: Int, count: Int = 32) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.kemOffset + 32 * index, count: count)
    }
    /// The KEM area's ciphertext-sized buffer.
    var ciphertextBuffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.kemOffset + 8 * 32, count: KyberParameters.ciphertextBytes)
    }

    /// Runs `body` with a zeroed workspace; wipes and frees it afterwards, however `body` ends.
    static func with<R, E: Error>(_ body: (KyberWorkspace) throws(E) -> R) throws(E) -> R {
        let base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        defer {
            sodium_memzero(base, byteCount)
            base.deallocate()
        }
        // The accumulator starts zero and `finishAccumulation` leaves it zero.
        return try body(KyberWorkspace(base: base))
    }
}
