import ParleyCrypto
import Testing

/// libsignal's canonical-key rule for incoming base keys (issue 10, defect 2).
@Suite struct CanonicalKeyTests {
    @Test func canonicalKeyChecks() throws {
        let honest = try PrivateKey.generate(using: SystemRandom.shared).publicKey
        #expect(honest.isCanonical)
        #expect(honest.canonicalEncoding == honest)
        var high = honest.serialized
        high[32] |= 0x80
        let flipped = try PublicKey(serialized: high)
        #expect(!flipped.isCanonicalEncoding && !flipped.isCanonical)
        #expect(flipped.canonicalEncoding == honest)
        // u = p + 1 encodes 1; u = p - 1 (-1) is not a curve point; 0 and 1 have small order.
        let pPlusOne = try PublicKey(u: [0xEE] + [UInt8](repeating: 0xFF, count: 30) + [0x7F])
        #expect(!pPlusOne.isCanonicalEncoding)
        #expect(pPlusOne.canonicalEncoding == (try PublicKey(u: [1] + [UInt8](repeating: 0, count: 31))))
        let pMinusOne = try PublicKey(u: [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F])
        #expect(pMinusOne.isCanonicalEncoding && !pMinusOne.isTorsionFree)
        for small in [[UInt8](repeating: 0, count: 32), [1] + [UInt8](repeating: 0, count: 31)] {
            #expect(!(try PublicKey(u: small)).isTorsionFree)
        }
    }
}
