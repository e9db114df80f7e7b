import Foundation
import ParleyConformance
import ParleyCrypto
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite struct KnownAnswerTests {
    @Test func everyPrimitiveVectorPasses() {
        let path = repositoryRoot.appendingPathComponent("TestVectors/primitives").path
        let outcomes = ConformanceRunner().run(paths: [path])
        #expect(outcomes.count >= 40, "expected the RFC/NIST/XEdDSA cases, found \(outcomes.count)")
        for outcome in outcomes where !outcome.passed {
            Issue.record("\(outcome.line)")
        }
    }
}

@Suite struct HMACAndHKDFTests {
    @Test func streamingEqualsOneShot() {
        let key = [UInt8](repeating: 7, count: 100)  // longer than a block: hashed first
        let data = (0..<300).map { UInt8($0 & 0xff) }
        let oneShot = HMACSHA256.mac(key: key, data: data)
        var stream = HMACSHA256(key: key).start()
        stream.update(Array(data[0..<10]))
        stream.update(Array(data[10...]))
        #expect(stream.finish() == oneShot)
        #expect(oneShot.count == 32)
        #expect(HMACSHA256.mac(key: key, data: data + [0]) != oneShot)
    }

    @Test func hkdfRejectsOverlongOutput() {
        #expect(throws: CryptoError.outputTooLong(255 * 32 + 1)) {
            _ = try HKDF.derive(ikm: [UInt8](repeating: 1, count: 32), salt: [UInt8](), info: [UInt8](), length: 255 * 32 + 1)
        }
        let max = try? HKDF.derive(ikm: [UInt8](repeating: 1, count: 32), salt: [UInt8](), info: [UInt8](), length: 255 * 32)
        #expect(max?.count == 255 * 32)
    }

    @Test func emptySaltIsThirtyTwoZeros() throws {
        let ikm = [UInt8](repeating: 9, count: 40)
        let a = try HKDF.derive(ikm: ikm, salt: [UInt8](), info: Array("x".utf8), length: 64)
        let b = try HKDF.derive(ikm: ikm, salt: [UInt8](repeating: 0, count: 32), info: Array("x".utf8), length: 64)
        #expect(a == b)
    }
}

@Suite struct AESTests {
    let key = [UInt8](repeating: 1, count: 32)
    let iv = [UInt8](repeating: 2, count: 16)

    @Test(arguments: [0, 1, 15, 16, 17, 200, 4096])
    func roundTrip(length: Int) throws {
        let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let ciphertext = try AES256CBC.encrypt(plaintext, key: key, iv: iv)
        #expect(ciphertext.count == (length / 16 + 1) * 16)
        #expect(try AES256CBC.decrypt(ciphertext, key: key, iv: iv) == plaintext)

        // Encrypting into a caller's buffer writes the same bytes and nothing past them.
        #expect(AES256CBC.paddedCount(length) == ciphertext.count)
        var buffer = [UInt8](repeating: 0xEE, count: ciphertext.count + 3)
        let written = try plaintext.withUnsafeBytes { p in
            try key.withUnsafeBytes { k in
                try iv.withUnsafeBytes { v in
                    try buffer.withUnsafeMutableBytes { out in
                        try AES256CBC.encrypt(p, key: k, iv: v, into: UnsafeMutableRawBufferPointer(rebasing: out[1..<(1 + ciphertext.count)]))
                    }
                }
            }
        }
        #expect(written == ciphertext.count)
        #expect(Array(buffer[1..<(1 + written)]) == ciphertext)
        #expect(buffer[0] == 0xEE && buffer[(1 + written)...].allSatisfy { $0 == 0xEE })
    }

    @Test func badPaddingIsATypedError() throws {
        var ciphertext = try AES256CBC.encrypt([UInt8](repeating: 5, count: 20), key: key, iv: iv)
        ciphertext[ciphertext.count - 1] ^= 0x55  // corrupts the last block's padding
        #expect(throws: CryptoError.invalidPadding) { try AES256CBC.decrypt(ciphertext, key: key, iv: iv) }
        #expect(throws: CryptoError.invalidPadding) { try AES256CBC.decrypt([UInt8](repeating: 0, count: 15), key: key, iv: iv) }
        #expect(throws: CryptoError.invalidPadding) { try AES256CBC.decrypt([UInt8](), key: key, iv: iv) }
    }

    /// Cipher contexts are per thread and re-keyed per call: interleaved padded and unpadded
    /// operations with different keys on many threads must not disturb each other.
    @Test func concurrentAndInterleavedUse() {
        let failures = ManagedAtomicCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<300 {
                let key = [UInt8](repeating: UInt8(truncatingIfNeeded: worker * 31 + i), count: 32)
                let iv = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 16)
                let plaintext = [UInt8](repeating: UInt8(truncatingIfNeeded: worker), count: (i % 5) * 16)
                do {
                    let padded = try AES256CBC.encrypt(plaintext, key: key, iv: iv)
                    let raw = try AES256CBC.encrypt(plaintext, key: key, iv: iv, padding: false)
                    let back = try AES256CBC.decrypt(padded, key: key, iv: iv)
                    let rawBack = try AES256CBC.decrypt(raw, key: key, iv: iv, padding: false)
                    if back != plaintext || rawBack != plaintext || raw != Array(padded.prefix(plaintext.count)) {
                        failures.increment()
                    }
                } catch {
                    failures.increment()
                }
            }
        }
        #expect(failures.value == 0)
    }

    @Test func wrongKeyOrIVLength() {
        #expect(throws: CryptoError.invalidKeyLength(expected: 32, actual: 16)) {
            try AES256CBC.encrypt([1], key: [UInt8](repeating: 0, count: 16), iv: iv)
        }
        #expect(throws: CryptoError.invalidIVLength(8)) {
            try AES256CBC.encrypt([1], key: key, iv: [UInt8](repeating: 0, count: 8))
        }
    }
}

@Suite struct KeyTests {
    @Test func publicKeyParsing() throws {
        let key = try PrivateKey.generate(using: SystemRandom.shared).publicKey
        #expect(key.serialized.count == 33 && key.serialized[0] == 0x05)
        #expect(try PublicKey(serialized: key.serialized) == key)
        var wrongType = key.serialized
        wrongType[0] = 0x06
        #expect(throws: CryptoError.invalidKeyType(0x06)) { try PublicKey(serialized: wrongType) }
        #expect(throws: CryptoError.invalidKeyLength(expected: 33, actual: 32)) { try PublicKey(serialized: Array(key.serialized.dropLast())) }
    }

    @Test func agreementIsSymmetricAndRejectsSmallOrderPoints() throws {
        let a = try PrivateKey.generate(using: SystemRandom.shared)
        let b = try PrivateKey.generate(using: SystemRandom.shared)
        #expect(try a.agreement(with: b.publicKey) == b.agreement(with: a.publicKey))
        // u = 0 and u = 1 are points of small order: the shared secret would be all zeros.
        for u in [[UInt8](repeating: 0, count: 32), [1] + [UInt8](repeating: 0, count: 31)] {
            #expect(throws: CryptoError.nonContributoryAgreement) { try a.agreement(with: try PublicKey(u: u)) }
        }
    }

    @Test func clampingIsIdempotentAndSecretsAreNotPrinted() throws {
        let raw = [UInt8](repeating: 0xFF, count: 32)
        let k = try PrivateKey(bytes: raw)
        let again = try PrivateKey(bytes: k.rawBytes().copyBytes())
        #expect(k.publicKey == again.publicKey)
        #expect(!String(describing: k).contains(raw.hexString))
        #expect(String(describing: SecretBytes(copying: raw)) == "SecretBytes(32 bytes, redacted)")
    }
}

@Suite struct XEdDSATests {
    @Test func signAndVerifyRandomMessages() throws {
        for length in [0, 1, 33, 1000] {
            let key = try PrivateKey.generate(using: SystemRandom.shared)
            let message = SystemRandom.shared.draw(length, purpose: .other)
            let signature = try XEdDSA.sign(message, with: key, using: SystemRandom.shared)
            #expect(XEdDSA.verify(signature, of: message, by: key.publicKey))
            var tampered = signature
            tampered[10] ^= 1
            #expect(!XEdDSA.verify(tampered, of: message, by: key.publicKey))
            #expect(!XEdDSA.verify(signature, of: message + [1], by: key.publicKey))
            #expect(!XEdDSA.verify(Array(signature.dropLast()), of: message, by: key.publicKey))
        }
    }

    @Test func sameRandomnessSameSignature() throws {
        let key = try PrivateKey.generate(using: SystemRandom.shared)
        let z = [UInt8](repeating: 3, count: 64)
        #expect(try XEdDSA.sign([1, 2, 3], with: key, random: z) == XEdDSA.sign([1, 2, 3], with: key, random: z))
        #expect(throws: CryptoError.invalidKeyLength(expected: 64, actual: 63)) {
            try XEdDSA.sign([1], with: key, random: Array(z.dropLast()))
        }
    }
}

/// A lock-protected counter for tests that run work on several threads.
final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
