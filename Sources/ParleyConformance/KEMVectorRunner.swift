import ParleyCrypto

/// Runs one `"kind": "kem"` vector (`../shared/specs/test-vectors-v4.md` §5): every key pair
/// from its seed, every encapsulation from its randomness and back through decapsulation, every
/// tampered ciphertext (decapsulates without error, to a value other than the honest secret),
/// and every deserialization reject with its reason.
struct KEMVectorRunner {
    let vector: JSONValue

    func run() throws {
        let keyType = try vector["key_type"].int()
        guard let type = KEMKeyType(rawValue: UInt8(truncatingIfNeeded: keyType)), keyType <= 0xFF else {
            throw VectorError.mismatch("key_type \(keyType) is not a KEM Parley implements")
        }
        let sizes = vector["sizes"]
        for (field, object) in [("public_key", KEMObject.publicKey), ("secret_key", .secretKey), ("ciphertext", .ciphertext)] {
            let size = try sizes[field].int()
            guard size == type.serializedLength(of: object) else {
                throw VectorError.mismatch("sizes.\(field) is \(size), Parley's \(type) has \(type.serializedLength(of: object))")
            }
        }

        var keyPairs: [String: KEMKeyPair] = [:]
        for entry in try vector["keypairs"].array() {
            let id = try entry["id"].string()
            let pair = try KEMKeyPair(type, seed: try entry["keygen_seed"].hex())
            try expect(pair.publicKey.serialized, try entry["public_key"].hex(), "\(id).public_key")
            try expect(pair.secretKey.serialize().copyBytes(), try entry["secret_key"].hex(), "\(id).secret_key")
            // A parsed copy of each key behaves as the generated one.
            _ = try KEMPublicKey(serialized: pair.publicKey.serialized)
            _ = try KEMSecretKey(serialized: pair.secretKey.serialize())
            if entry["libcrux_kat"].exists {
                try KyberKATRunner.checkLibcruxEntry(entry["libcrux_kat"], type: type, label: "\(id).libcrux_kat")
            }
            keyPairs[id] = pair
        }
        func keyPair(_ entry: JSONValue) throws -> KEMKeyPair {
            let id = try entry["keypair"].string()
            guard let pair = keyPairs[id] else { throw VectorError.field(entry["keypair"].path, "a key pair id of this vector") }
            return pair
        }

        var secrets: [String: [UInt8]] = [:]
        var ciphertexts: [String: [UInt8]] = [:]
        for entry in try vector["encapsulations"].array() {
            let id = try entry["id"].string()
            let pair = try keyPair(entry)
            let (secret, ciphertext) = try pair.publicKey.encapsulate(randomness: try entry["m"].hex())
            let expectedSecret = try entry["shared_secret"].hex()
            try expect(ciphertext.serialized, try entry["ciphertext"].hex(), "\(id).ciphertext")
            try expect(secret.copyBytes(), expectedSecret, "\(id).shared_secret (encapsulation)")
            let parsed = try KEMCiphertext(serialized: try entry["ciphertext"].hex())
            try expect(try pair.secretKey.decapsulate(parsed).copyBytes(), expectedSecret, "\(id).shared_secret (decapsulation)")
            secrets[id] = expectedSecret
            ciphertexts[id] = ciphertext.serialized
        }

        for entry in try vector["tampered_decapsulations"].array() {
            let id = try entry["id"].string()
            let pair = try keyPair(entry)
            let tampered = try entry["ciphertext"].hex()
            let construction = entry["construction"]
            guard try construction["op"].string() == "flip_bit" else {
                throw VectorError.mismatch("\(id): unknown construction \(try construction["op"].string())")
            }
            let base = try construction["base"].string(), offset = try construction["offset"].int()
            guard let original = ciphertexts[base], original.count == tampered.count, offset >= 0, offset < tampered.count,
                  (0..<tampered.count).allSatisfy({ $0 == offset ? (original[$0] ^ tampered[$0]).nonzeroBitCount == 1 : original[$0] == tampered[$0] })
            else { throw VectorError.mismatch("\(id): the ciphertext is not \(base) with one bit of byte \(offset) flipped") }

            let first = try pair.secretKey.decapsulate(serialized: tampered).copyBytes()
            let again = try pair.secretKey.decapsulate(serialized: tampered).copyBytes()
            guard first != (try entry["must_differ_from"].hex()) else {
                throw VectorError.mismatch("\(id): the tampered ciphertext decapsulated to the honest secret")
            }
            guard first == again else { throw VectorError.mismatch("\(id): implicit rejection is not deterministic") }
            if let honest = secrets[base], first == honest { throw VectorError.mismatch("\(id): equals \(base)'s secret") }
        }

        for entry in try vector["rejects"].array() {
            let id = try entry["id"].string()
            let bytes = try entry["bytes"].hex(), reason = try entry["reason"].string()
            let what = try entry["deserialize"].string()
            var thrown: KEMError? = nil
            do {
                switch what {
                case "public_key": _ = try KEMPublicKey(serialized: bytes)
                case "secret_key": _ = try KEMSecretKey(serialized: bytes)
                case "ciphertext":
                    _ = try KEMCiphertext(serialized: bytes)
                    // libsignal rejects a malformed ciphertext at decapsulation the same way.
                    _ = try keyPair(entry).secretKey.decapsulate(serialized: bytes)
                default: throw VectorError.field(entry["deserialize"].path, "public_key, secret_key or ciphertext")
                }
            } catch let error as KEMError {
                thrown = error
            }
            guard let thrown else { throw VectorError.mismatch("\(id): \(what) of \(bytes.count) bytes was accepted, expected \(reason)") }
            guard thrown.reason == reason else {
                throw VectorError.mismatch("\(id): \(what) rejected as \(thrown.reason ?? "\(thrown)"), expected \(reason)")
            }
        }
    }
}
