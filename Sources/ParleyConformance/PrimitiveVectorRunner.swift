import ParleyCrypto
import ParleyProtocol

/// Runs one case of a known-answer file: the primitives (`TestVectors/primitives/`) and
/// safety numbers (`TestVectors/fingerprint/`).
struct PrimitiveVectorRunner {
    let kind: String
    let testCase: JSONValue

    static let kinds: Set<String> = ["x25519", "hkdf_sha256", "hmac_sha256", "aes_256_cbc", "xeddsa", "fingerprint"]

    func run() throws {
        let c = testCase
        switch kind {
        case "x25519":
            if c["iterations"].exists {
                var k = [UInt8](repeating: 0, count: 32)
                k[0] = 9
                var u = k
                for _ in 0..<(try c["iterations"].int()) {
                    let out = try x25519(k, u)
                    u = k
                    k = out
                }
                try expect(k, try c["output"].hex(), "iterated output")
            } else if c["shared"].exists {
                let alice = try PrivateKey(bytes: try c["alice_private"].hex())
                let bob = try PrivateKey(bytes: try c["bob_private"].hex())
                try expect(Array(alice.publicKey.u), try c["alice_public"].hex(), "alice_public")
                try expect(Array(bob.publicKey.u), try c["bob_public"].hex(), "bob_public")
                let ab = try alice.agreement(with: bob.publicKey).copyBytes()
                let ba = try bob.agreement(with: alice.publicKey).copyBytes()
                try expect(ab, try c["shared"].hex(), "shared (alice)")
                try expect(ba, try c["shared"].hex(), "shared (bob)")
            } else {
                try expect(try x25519(try c["scalar"].hex(), try c["u"].hex()), try c["output"].hex(), "output")
            }
        case "hkdf_sha256":
            let ikm = try c["ikm"].hex(), salt = try c["salt"].hex(), info = try c["info"].hex()
            var prk = [UInt8](repeating: 0, count: 32)
            ikm.withBytes { i in salt.withBytes { s in prk.withUnsafeMutableBytes { HKDF.extract(salt: s, ikm: i, into: $0) } } }
            try expect(prk, try c["prk"].hex(), "prk")
            let okm = try HKDF.derive(ikm: ikm, salt: salt, info: info, length: try c["length"].int())
            try expect(okm, try c["okm"].hex(), "okm")
        case "hmac_sha256":
            var mac = HMACSHA256.mac(key: try c["key"].hex(), data: try c["data"].hex())
            if c["truncate"].exists { mac = Array(mac.prefix(try c["truncate"].int())) }
            try expect(mac, try c["mac"].hex(), "mac")
        case "aes_256_cbc":
            let padding = try c["padding"].string() == "pkcs7"
            let key = try c["key"].hex(), iv = try c["iv"].hex()
            let plaintext = try c["plaintext"].hex(), ciphertext = try c["ciphertext"].hex()
            try expect(try AES256CBC.encrypt(plaintext, key: key, iv: iv, padding: padding), ciphertext, "ciphertext")
            try expect(try AES256CBC.decrypt(ciphertext, key: key, iv: iv, padding: padding), plaintext, "plaintext")
        case "xeddsa":
            let publicKey = try PublicKey(serialized: try c["public"].hex())
            let message = try c["message"].hex(), signature = try c["signature"].hex()
            let valid = try c["valid"].bool()
            if valid {
                let privateKey = try PrivateKey(bytes: try c["private"].hex())
                try expect(privateKey.publicKey.serialized, publicKey.serialized, "public")
                try expect(try XEdDSA.sign(message, with: privateKey, random: try c["random"].hex()), signature, "signature")
            }
            guard XEdDSA.verify(signature, of: message, by: publicKey) == valid else {
                throw VectorError.mismatch(valid ? "valid signature rejected" : "invalid signature accepted")
            }
            // A prepared key verifies its first signature with libsodium, later ones with its
            // tables: both must agree with the vector.
            let prepared = XEdDSA.VerifyingKey(publicKey)
            for round in 0..<3 where prepared.verify(signature, of: message) != valid {
                throw VectorError.mismatch("prepared key, verification \(round + 1): " + (valid ? "valid signature rejected" : "invalid signature accepted"))
            }
        case "fingerprint":
            let alice = try IdentityKey(serialized: try c["alice_identity"].hex())
            let bob = try IdentityKey(serialized: try c["bob_identity"].hex())
            let aliceId = Array(try c["alice_id"].string().utf8), bobId = Array(try c["bob_id"].string().utf8)
            let iterations = try c["iterations"].int(), version = try c["version"].uint32()
            let a = try SafetyNumber(localId: aliceId, localKey: alice, remoteId: bobId, remoteKey: bob, iterations: iterations, version: version)
            let b = try SafetyNumber(localId: bobId, localKey: bob, remoteId: aliceId, remoteKey: alice, iterations: iterations, version: version)
            guard a.displayString == (try c["display"].string()), b.displayString == a.displayString else {
                throw VectorError.mismatch("display \(a.displayString) / \(b.displayString)")
            }
            try expect(a.scannable, try c["alice_scannable"].hex(), "alice scannable")
            try expect(b.scannable, try c["bob_scannable"].hex(), "bob scannable")
            guard try a.matches(scanned: b.scannable), try b.matches(scanned: a.scannable), !(try a.matches(scanned: a.scannable)) else {
                throw VectorError.mismatch("scanned comparison")
            }
        default:
            throw VectorError.mismatch("unknown kind \"\(kind)\"")
        }
    }

    private func x25519(_ scalar: [UInt8], _ u: [UInt8]) throws -> [UInt8] {
        var masked = u
        if masked.count == 32 { masked[31] &= 0x7F }
        return try PrivateKey(bytes: scalar).agreement(with: try PublicKey(u: masked)).copyBytes()
    }
}
