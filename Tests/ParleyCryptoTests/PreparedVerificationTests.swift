@testable import ParleyCrypto
import Testing

/// The table-based verification of a prepared key (`XEdDSA.VerifyingKey` from its second
/// verification on) must give libsodium's answer for every input.
@Suite struct PreparedVerificationTests {
    /// L, little-endian.
    static let order: [UInt8] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
    ]

    func agree(_ key: XEdDSA.VerifyingKey, _ signature: [UInt8], _ message: [UInt8], _ what: String) {
        guard let y = key.prepared.edwardsY else {
            #expect(!key.verify(signature, of: message), "\(what): no Edwards point, yet accepted")
            return
        }
        let reference = XEdDSA.verify(signature, of: message, edwardsY: y)
        #expect(key.verify(signature, of: message) == reference, "\(what): prepared \(!reference), libsodium \(reference)")
    }

    @Test func agreesWithLibsodium() throws {
        var rng = SeededRandom(seed: 20261205)
        for round in 0..<12 {
            let privateKey = try PrivateKey(bytes: rng.bytes(32))
            let signer = try XEdDSA.SigningKey(privateKey)
            let key = XEdDSA.VerifyingKey(privateKey.publicKey)
            let warmUp = rng.bytes(10)
            _ = key.verify(try signer.sign(warmUp, random: rng.bytes(64)), of: warmUp)  // builds the tables next time
            for _ in 0..<20 {
                let message = rng.bytes(Int(rng.next() % 300))
                let signature = try signer.sign(message, random: rng.bytes(64))
                #expect(key.verify(signature, of: message), "round \(round): genuine signature rejected")
                agree(key, signature, message, "genuine")
                // Every single-bit change of the signature.
                for bit in stride(from: Int(rng.next() % 7), to: 512, by: 7) {
                    var bad = signature
                    bad[bit / 8] ^= UInt8(1 << (bit % 8))
                    agree(key, bad, message, "bit \(bit)")
                }
                var otherMessage = message + [0]
                agree(key, signature, otherMessage, "longer message")
                otherMessage = message.isEmpty ? [1] : Array(message.dropLast())
                agree(key, signature, otherMessage, "shorter message")
                // s + L (bit 7 of byte 63 kept), a random R, a small-order R.
                var plusL = signature
                var carry = 0
                for i in 0..<32 {
                    let sum = Int(plusL[32 + i] & (i == 31 ? 0x7F : 0xFF)) + Int(Self.order[i]) + carry
                    plusL[32 + i] = UInt8(sum & 0xFF) | (i == 31 ? signature[63] & 0x80 : 0)
                    carry = sum >> 8
                }
                agree(key, plusL, message, "s + L")
                var randomR = signature
                randomR.replaceSubrange(0..<32, with: rng.bytes(32))
                agree(key, randomR, message, "random R")
                var identityR = signature
                identityR.replaceSubrange(0..<32, with: [1] + [UInt8](repeating: 0, count: 31))
                agree(key, identityR, message, "small-order R")
            }
            // Another key's signature.
            let other = try XEdDSA.SigningKey(try PrivateKey(bytes: rng.bytes(32)))
            agree(key, try other.sign([1, 2, 3], random: rng.bytes(64)), [1, 2, 3], "other key")
        }
    }

    @Test func oneShotAndPreparedSignaturesMatch() throws {
        var rng = SeededRandom(seed: 7)
        let privateKey = try PrivateKey(bytes: rng.bytes(32))
        let z = rng.bytes(64)
        let message = rng.bytes(100)
        #expect(try XEdDSA.sign(message, with: privateKey, random: z) == (try XEdDSA.SigningKey(privateKey).sign(message, random: z)))
    }

    @Test func invalidPublicKeysNeverVerify() throws {
        // u = -1 has no Edwards point; u = 0 and 1 map to small-order points.
        let minusOne = try PublicKey(u: [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F])
        let zero = try PublicKey(u: [UInt8](repeating: 0, count: 32))
        let one = try PublicKey(u: [1] + [UInt8](repeating: 0, count: 31))
        var rng = SeededRandom(seed: 9)
        for publicKey in [minusOne, zero, one] {
            let key = XEdDSA.VerifyingKey(publicKey)
            for _ in 0..<3 {
                let signature = rng.bytes(64).enumerated().map { $0.offset == 63 ? $0.element & 0x8F : $0.element }
                #expect(!key.verify(signature, of: [1]))
            }
        }
    }
}

/// SplitMix64, for reproducible inputs.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
