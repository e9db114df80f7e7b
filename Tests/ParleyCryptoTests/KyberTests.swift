import Foundation
@testable import ParleyConformance
@testable import ParleyCrypto
import Testing

/// The KEM against published answers: the shared v4 KEM vector, libcrux's 100-entry KAT file and
/// the round-3 reference's 100-entry `.rsp`, all from `TestVectors/` (no network, no ../shared).
@Suite struct KyberKnownAnswerTests {
    func outcomes(_ relativePath: String) -> [ConformanceRunner.Outcome] {
        ConformanceRunner().run(paths: [repositoryRoot.appendingPathComponent(relativePath).path])
    }

    func expectAllPass(_ outcomes: [ConformanceRunner.Outcome], count: Int) {
        #expect(outcomes.count == count)
        for outcome in outcomes where !outcome.passed { Issue.record("\(outcome.line)") }
    }

    @Test func sharedKEMVectorPasses() {
        expectAllPass(outcomes("TestVectors/protocol-v4/kem_kyber1024_public.json"), count: 1)
    }

    @Test func libcruxKnownAnswersPass() {
        expectAllPass(outcomes("TestVectors/primitives/nistkats_kyber_1024.json"), count: 100)
    }

    @Test func referenceKnownAnswersPass() {
        expectAllPass(outcomes("TestVectors/primitives/PQCkemKAT_3168.rsp"), count: 100)
    }

    /// The .rsp seeds are the outputs of NIST's DRBG seeded with 00..2f (PQCgenKAT_kem), and
    /// each seed's own DRBG gives libcrux's d || z and m: the two files are the same 100 cases,
    /// and the Swift DRBG that the .rsp check relies on is NIST's.
    @Test func drbgDerivesBothFilesFromTheSameSeeds() throws {
        let primitives = repositoryRoot.appendingPathComponent("TestVectors/primitives")
        let rsp = try KyberKATRunner.parseResponseFile(
            String(contentsOf: primitives.appendingPathComponent("PQCkemKAT_3168.rsp"), encoding: .utf8))
        let libcrux = try JSONValue.parse(Data(contentsOf: primitives.appendingPathComponent("nistkats_kyber_1024.json"))).array()
        try #require(rsp.count == 100 && libcrux.count == 100)
        var outer = try NISTKATRandom(seed: (0..<48).map { UInt8($0) })
        for (index, entry) in rsp.enumerated() {
            #expect(entry.count == index)
            #expect(try outer.generate(48) == entry.seed, "seed of count \(index)")
            var inner = try NISTKATRandom(seed: entry.seed)
            let dz = try inner.generate(32) + inner.generate(32)
            let m = try inner.generate(32)
            #expect(dz == (try libcrux[index]["key_generation_seed"].hex()), "d || z of entry \(index)")
            #expect(m == (try libcrux[index]["encapsulation_seed"].hex()), "m of entry \(index)")
        }
    }
}

@Suite struct KEMEncodingTests {
    static let objects: [(KEMObject, Int)] = [(.publicKey, 1569), (.secretKey, 3169), (.ciphertext, 1569)]

    func parse(_ object: KEMObject, _ bytes: [UInt8]) throws(KEMError) {
        switch object {
        case .publicKey: _ = try KEMPublicKey(serialized: bytes)
        case .secretKey: _ = try KEMSecretKey(serialized: bytes)
        case .ciphertext: _ = try KEMCiphertext(serialized: bytes)
        }
    }

    @Test func sizesAreLibsignals() {
        #expect(KEMKeyType.kyber1024.rawValue == 0x08)
        for (object, length) in Self.objects { #expect(KEMKeyType.kyber1024.serializedLength(of: object) == length) }
        #expect(KEMKeyType.kyber1024.keyGenerationSeedLength == 64)
        #expect(KEMKeyType.kyber1024.encapsulationRandomnessLength == 32)
        #expect(KEMKeyType.kyber1024.sharedSecretLength == 32)
    }

    @Test func parsingRejectsWithTypedErrors() throws {
        let pair = try KEMKeyPair.generate(using: SystemRandom.shared)
        let (_, ciphertext) = try pair.publicKey.encapsulate(using: SystemRandom.shared)
        let genuine: [KEMObject: [UInt8]] = [
            .publicKey: pair.publicKey.serialized, .secretKey: pair.secretKey.serialize().copyBytes(), .ciphertext: ciphertext.serialized,
        ]
        for (object, length) in Self.objects {
            let bytes = try #require(genuine[object])
            #expect(bytes.count == length && bytes[0] == 0x08)
            #expect(throws: Never.self) { try parse(object, bytes) }
            #expect(throws: KEMError.noKeyType) { try parse(object, []) }
            for typeByte: UInt8 in [0x00, 0x05, 0x07, 0x0A, 0xFF] {
                #expect(throws: KEMError.badKeyType(typeByte)) { try parse(object, [typeByte] + bytes.dropFirst()) }
            }
            for wrong in [1, length - 1, length + 1, 2 * length] {
                let changed = Array((bytes + bytes).prefix(wrong))
                #expect(throws: KEMError.badLength(object, expected: length, actual: wrong)) { try parse(object, changed) }
            }
        }
        // A malformed ciphertext is refused by decapsulation the same way, never decapsulated.
        #expect(throws: KEMError.noKeyType) { try pair.secretKey.decapsulate(serialized: [UInt8]()) }
        #expect(throws: KEMError.badKeyType(0x0A)) { try pair.secretKey.decapsulate(serialized: [0x0A] + ciphertext.serialized.dropFirst()) }
        #expect(throws: KEMError.badLength(.ciphertext, expected: 1569, actual: 1568)) {
            try pair.secretKey.decapsulate(serialized: Array(ciphertext.serialized.dropLast()))
        }
        #expect(KEMError.badLength(.ciphertext, expected: 1569, actual: 1).reason == "bad_length")
        #expect(KEMError.noKeyType.reason == "no_key_type" && KEMError.badKeyType(7).reason == "bad_key_type")
    }

    @Test func seedAndRandomnessLengthsAreChecked() throws {
        #expect(throws: KEMError.badRandomnessLength(expected: 64, actual: 63)) {
            try KEMKeyPair(seed: [UInt8](repeating: 1, count: 63))
        }
        let pair = try KEMKeyPair(seed: [UInt8](repeating: 1, count: 64))
        #expect(throws: KEMError.badRandomnessLength(expected: 32, actual: 33)) {
            try pair.publicKey.encapsulate(randomness: [UInt8](repeating: 2, count: 33))
        }
    }
}

@Suite struct KEMBehaviourTests {
    @Test func randomKeysRoundTrip() throws {
        var ciphertexts = Set<[UInt8]>()
        for _ in 0..<8 {
            let pair = try KEMKeyPair.generate(using: SystemRandom.shared)
            let publicKey = try KEMPublicKey(serialized: pair.publicKey.serialized)
            let secretKey = try KEMSecretKey(serialized: pair.secretKey.serialize())
            #expect(publicKey == pair.publicKey)
            let stored = KEMKeyPair(publicKey: publicKey, secretKey: secretKey)
            let (sent, ciphertext) = try publicKey.encapsulate(using: SystemRandom.shared)
            #expect(sent.count == 32)
            #expect(try stored.secretKey.decapsulate(serialized: ciphertext.serialized) == sent)
            #expect(try pair.secretKey.decapsulate(ciphertext) == sent)
            ciphertexts.insert(ciphertext.serialized)
            // The raw secret key carries the public key, its hash and z after s_hat.
            let raw = Array(pair.secretKey.serialize().copyBytes().dropFirst())
            #expect(Array(raw[1536..<3104]) == Array(pair.publicKey.serialized.dropFirst()))
            #expect(Array(raw[3104..<3136]) == (try SHA3.sha3_256(Array(pair.publicKey.serialized.dropFirst()))))
        }
        #expect(ciphertexts.count == 8)
    }

    /// A ciphertext of the right type and length always decapsulates; one that was altered gives
    /// libcrux's implicit-rejection secret, SHAKE256(SHAKE256(z || c, 32) || SHA3-256(c), 32)
    /// (c raw, without the type byte), the same every time, never the honest secret.
    @Test func implicitRejection() throws {
        let pair = try KEMKeyPair(seed: (0..<64).map { UInt8($0 * 7 & 0xFF) })
        let (honest, ciphertext) = try pair.publicKey.encapsulate(randomness: [UInt8](repeating: 0x5A, count: 32))
        let z = Array(pair.secretKey.serialize().copyBytes().suffix(32))
        for (offset, bit) in [(1, 0), (2, 7), (700, 3), (1408, 1), (1409, 4), (1568, 7)] {
            var tampered = ciphertext.serialized
            tampered[offset] ^= 1 << bit
            let first = try pair.secretKey.decapsulate(serialized: tampered)
            let second = try pair.secretKey.decapsulate(serialized: tampered)
            #expect(first == second)
            #expect(first != honest)
            let raw = Array(tampered.dropFirst())
            let expected = try SHA3.shake256(try SHA3.shake256(z + raw, outputCount: 32) + SHA3.sha3_256(raw), outputCount: 32)
            #expect(first.copyBytes() == expected, "rejection secret for byte \(offset) bit \(bit)")
        }
        // The honest ciphertext still decapsulates afterwards: rejection changed nothing.
        #expect(try pair.secretKey.decapsulate(ciphertext) == honest)
    }

    /// `generate` and `encapsulate(using:)` take exactly one draw each, of the sizes and
    /// purposes a replayed transcript expects, and equal the seeded forms.
    @Test func drawsFromTheRandomSource() throws {
        final class Recorder: RandomSource {
            var draws: [(Int, RandomPurpose)] = []
            func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
                draws.append((count, purpose))
                return (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ draws.count) }
            }
        }
        let recorder = Recorder()
        let generated = try KEMKeyPair.generate(using: recorder)
        let seed = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 1) }
        #expect(generated.publicKey == (try KEMKeyPair(seed: seed)).publicKey)
        let (secret, ciphertext) = try generated.publicKey.encapsulate(using: recorder)
        let m = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 2) }
        let (secret2, ciphertext2) = try generated.publicKey.encapsulate(randomness: m)
        #expect(secret == secret2 && ciphertext == ciphertext2)
        #expect(recorder.draws.map(\.0) == [64, 32])
        #expect(recorder.draws.map(\.1) == [.kemKeySeed, .kemEncapsulation])
    }

    @Test func secretsAreNotPrinted() throws {
        let pair = try KEMKeyPair(seed: [UInt8](repeating: 3, count: 64))
        let hex = pair.secretKey.serialize().copyBytes().prefix(12).hexString
        #expect(!String(describing: pair.secretKey).contains(hex))
        #expect(String(describing: pair.secretKey) == "KEMSecretKey(kyber1024, redacted)")
    }

    @Test func concurrentUseAgrees() throws {
        let pair = try KEMKeyPair(seed: [UInt8](repeating: 9, count: 64))
        let (expected, ciphertext) = try pair.publicKey.encapsulate(randomness: [UInt8](repeating: 4, count: 32))
        let failures = ManagedAtomicCounter()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in 0..<10 {
                do {
                    let (secret, c) = try pair.publicKey.encapsulate(randomness: [UInt8](repeating: 4, count: 32))
                    let back = try pair.secretKey.decapsulate(c)
                    if secret != expected || c != ciphertext || back != expected { failures.increment() }
                    let (other, oc) = try pair.publicKey.encapsulate(randomness: [UInt8](repeating: UInt8(worker * 16 + i), count: 32))
                    let otherBack = try pair.secretKey.decapsulate(oc)
                    if otherBack != other { failures.increment() }
                } catch {
                    failures.increment()
                }
            }
        }
        #expect(failures.value == 0)
    }
}

/// The building blocks, against definitions computed the slow way.
@Suite struct KyberArithmeticTests {
    typealias A = KyberArithmetic
    static let q = Int(KyberParameters.q)

    func mod(_ x: Int) -> Int { ((x % Self.q) + Self.q) % Self.q }

    @Test func constants() {
        let q = Self.q, r = 1 << 16
        #expect((Int(A.qInverse) * q) & 0xFFFF == 1)
        #expect(mod(Int(A.montgomerySquared)) == mod(r * r))
        #expect(mod(Int(A.inverseScale) * 128) == mod(r * r))
        var power = 1
        for _ in 0..<128 { power = power * 17 % q }
        #expect(power == q - 1)  // 17 is a primitive 256th root of unity
        for i in 0..<128 {
            let reversed = (0..<7).reduce(0) { $0 | ((i >> $1) & 1) << (6 - $1) }
            var z = 1
            for _ in 0..<reversed { z = z * 17 % q }
            #expect(mod(Int(A.zetas[i])) == z * r % q)
            #expect(abs(Int(A.zetas[i])) <= q / 2)
        }
    }

    @Test func barrettReductionOverAllInt16() {
        let wrong = (Int(Int16.min)...Int(Int16.max)).filter { value in
            let reduced = Int(A.barrettReduce(Int16(value)))
            return mod(reduced - value) != 0 || abs(reduced) > (Self.q - 1) / 2
        }
        #expect(wrong.isEmpty, "first wrong input: \(wrong.first ?? 0)")
    }

    @Test func montgomeryReductionAndTheVectorFormsAgree() {
        var rng = SystemRandomNumberGenerator()
        let rInverse = 169  // 2^16 * 169 = 1 mod q
        #expect((1 << 16) * rInverse % Self.q == 1)
        for _ in 0..<64 {
            var a = KyberVector.Lanes(), b = KyberVector.Lanes()
            for lane in 0..<16 {
                a[lane] = Int16.random(in: -4095...4095, using: &rng)
                b[lane] = Int16.random(in: -26000...26000, using: &rng)  // |a b| < q 2^15
            }
            let vectorProduct = KyberVector.montgomeryMultiply(a, b)
            var wide = KyberVector.Lanes()
            for lane in 0..<16 { wide[lane] = Int16.random(in: Int16.min...Int16.max, using: &rng) }
            let vectorReduced = KyberVector.barrettReduce(wide)
            for lane in 0..<16 {
                let scalar = A.montgomeryMultiply(a[lane], b[lane])
                #expect(vectorProduct[lane] == scalar)
                #expect(mod(Int(scalar) - Int(a[lane]) * Int(b[lane]) * rInverse) == 0 && abs(Int(scalar)) < Self.q)
                #expect(vectorReduced[lane] == A.barrettReduce(wide[lane]))
            }
        }
    }

    /// Compress without division equals the rounding of x * 2^d / q for every x in [0, q).
    @Test(arguments: [1, 5, 11])
    func compressionIsExactRounding(bits d: Int) {
        for x in 0..<Self.q {
            let exact = ((x << d) * 2 + Self.q) / (2 * Self.q) % (1 << d)  // floor(x 2^d / q + 1/2) mod 2^d
            if Int(KyberEncoding.compress(Int16(x), bits: d)) != exact {
                Issue.record("Compress(\(x), \(d)) = \(KyberEncoding.compress(Int16(x), bits: d)), expected \(exact)")
                return
            }
        }
        for y in 0..<(1 << d) {
            #expect(Int(KyberEncoding.decompress(UInt32(y), bits: d)) == (2 * Self.q * y + (1 << d)) / (2 << d))
        }
    }

    /// NTT, pointwise multiplication and inverse NTT compute the product in Z_q[X]/(X^256 + 1).
    @Test func transformMultipliesLikeSchoolbook() {
        let buffer = UnsafeMutablePointer<Int16>.allocate(capacity: 4 * 256)
        defer { buffer.deallocate() }
        let a = buffer, b = buffer + 256, acc = buffer + 512, out = buffer + 768
        var rng = SystemRandomNumberGenerator()
        for round in 0..<8 {
            let aCoefficients = (0..<256).map { _ in Int.random(in: 0..<Self.q, using: &rng) }
            let bCoefficients = (0..<256).map { _ in round == 0 ? 1 : Int.random(in: -2...2, using: &rng) }
            var expected = [Int](repeating: 0, count: 256)
            for i in 0..<256 {
                for j in 0..<256 {
                    let term = aCoefficients[i] * bCoefficients[j]
                    if i + j < 256 { expected[i + j] += term } else { expected[i + j - 256] -= term }
                }
            }
            for i in 0..<256 { a[i] = Int16(aCoefficients[i]); b[i] = Int16(bCoefficients[i]); acc[i] = 0 }
            A.ntt(a)
            A.ntt(b)
            A.multiplyAccumulate(acc, a, b)
            A.finishAccumulation(acc, into: out)
            A.inverseNTT(out)
            #expect((0..<256).allSatisfy { mod(Int(out[$0])) == mod(expected[$0]) }, "round \(round)")
            #expect((0..<256).allSatisfy { acc[$0] == 0 })
        }
    }

    @Test func encodingsRoundTrip() {
        let poly = UnsafeMutablePointer<Int16>.allocate(capacity: 512)
        defer { poly.deallocate() }
        var bytes = [UInt8](repeating: 0, count: 384)
        for i in 0..<256 { poly[i] = Int16(i * 13 % Self.q) - Int16(i % 2 == 0 ? 0 : Self.q - 1) }
        bytes.withUnsafeMutableBytes { KyberEncoding.encode12(poly, into: $0) }
        bytes.withUnsafeBytes { KyberEncoding.decode12($0, into: poly + 256) }
        #expect((0..<256).allSatisfy { Int(poly[256 + $0]) == mod(Int(poly[$0])) })
        // Decode_12 keeps non-canonical values (up to 4095) as the reference does.
        let high = [UInt8](repeating: 0xFF, count: 384)
        high.withUnsafeBytes { KyberEncoding.decode12($0, into: poly) }
        #expect((0..<256).allSatisfy { poly[$0] == 4095 })
        // Compress/decompress at 11 and 5 bits moves each coefficient by at most q / 2^(d+1).
        for (d, size) in [(11, 352), (5, 160)] {
            for i in 0..<256 { poly[i] = Int16(i * 97 % Self.q) }
            var packed = [UInt8](repeating: 0, count: size)
            packed.withUnsafeMutableBytes {
                d == 11 ? KyberEncoding.compressEncode11(poly, into: $0) : KyberEncoding.compressEncode5(poly, into: $0)
            }
            packed.withUnsafeBytes {
                d == 11 ? KyberEncoding.decodeDecompress11($0, into: poly + 256) : KyberEncoding.decodeDecompress5($0, into: poly + 256)
            }
            for i in 0..<256 {
                let distance = abs(Int(poly[256 + i]) - Int(poly[i]))
                #expect(min(distance, Self.q - distance) <= (Self.q + (1 << d)) >> (d + 1), "d = \(d), coefficient \(i)")
            }
        }
    }

    /// When three SHAKE128 blocks do not give 256 coefficients below q, sampling continues the
    /// same stream: the entry equals rejection sampling over one long output.
    @Test func matrixSamplingContinuesTheStreamWhenShort() throws {
        let buffer = UnsafeMutablePointer<Int16>.allocate(capacity: 256 + KyberWorkspace.entrySlack)
        defer { buffer.deallocate() }
        var xof = [UInt8](repeating: 0, count: KyberSampling.xofSecondBytes)
        guard var keccak = KeccakContext() else {
            Issue.record("no EVP context")
            return
        }
        var short = 0
        var seed: UInt64 = 1
        for _ in 0..<3000 where short < 3 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let rho = (0..<32).map { UInt8(truncatingIfNeeded: seed >> UInt64($0 % 8 * 8) &+ UInt64($0)) }
            let stream = try SHA3.shake128(rho + [1, 2], outputCount: 3 * 168 * 4)
            // Accepted candidates in the first 504 bytes:
            var accepted = 0
            for position in stride(from: 0, to: 504, by: 3) {
                let b0 = Int(stream[position]), b1 = Int(stream[position + 1]), b2 = Int(stream[position + 2])
                accepted += ((b0 | b1 << 8) & 0xFFF) < Self.q ? 1 : 0
                accepted += ((b1 >> 4 | b2 << 4)) < Self.q ? 1 : 0
            }
            guard accepted < 256 else { continue }
            short += 1
            var expected: [Int16] = []
            for position in stride(from: 0, to: stream.count, by: 3) where expected.count < 256 {
                let b0 = Int(stream[position]), b1 = Int(stream[position + 1]), b2 = Int(stream[position + 2])
                for candidate in [(b0 | b1 << 8) & 0xFFF, b1 >> 4 | b2 << 4] where candidate < Self.q && expected.count < 256 {
                    expected.append(Int16(candidate))
                }
            }
            rho.withUnsafeBytes { r in
                xof.withUnsafeMutableBytes { x in
                    KyberSampling.uniform(buffer, rho: r, i: 2, j: 1, transposed: false, keccak: &keccak, buffer: x)
                }
            }
            let ok = keccak.ok
            #expect(ok)
            #expect((0..<256).allSatisfy { buffer[$0] == expected[$0] })
        }
        #expect(short > 0, "no seed needed more than three blocks")
    }
}

@Suite struct SHA3Tests {
    @Test func knownAnswers() throws {
        #expect(try SHA3.sha3_256([UInt8]()).hexString == "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a")
        #expect(try SHA3.sha3_256(Array("abc".utf8)).hexString == "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
        #expect(try SHA3.sha3_512(Array("abc".utf8)).hexString
            == "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0")
        #expect(try SHA3.shake128([UInt8](), outputCount: 32).hexString == "7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26")
        #expect(try SHA3.shake256([UInt8](), outputCount: 64).hexString
            == "46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762fd75dc4ddd8c0f200cb05019d67b592f6fc821c49479ab48640292eacb3b7c4be")
        #expect(try SHA3.shake128([1], outputCount: 0).isEmpty)
    }

    /// The matrix sampler relies on it: a longer XOF output extends a shorter one.
    @Test func xofOutputIsPrefixStable() throws {
        let input = (0..<34).map { UInt8($0) }
        let long = try SHA3.shake128(input, outputCount: 1000)
        for length in [1, 167, 168, 169, 504, 840] {
            #expect(try SHA3.shake128(input, outputCount: length) == Array(long.prefix(length)))
        }
        #expect(try SHA3.shake256(input, outputCount: 136) == Array(try SHA3.shake256(input, outputCount: 300).prefix(136)))
    }
}
