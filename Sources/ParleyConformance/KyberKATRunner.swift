import Foundation
import ParleyCrypto

/// The published Kyber1024 known-answer files, in their own formats, each entry one vector:
///
/// * libcrux's `nistkats_kyber_1024.json` (the file libsignal's Kyber backend is tested with):
///   a JSON array of `{key_generation_seed (d || z), sha3_256_hash_of_public_key,
///   sha3_256_hash_of_secret_key, encapsulation_seed (m), sha3_256_hash_of_ciphertext,
///   shared_secret}`; the hashes are of the raw key and ciphertext (no type byte).
/// * the round-3 reference's `PQCkemKAT_3168.rsp` (NIST's `PQCgenKAT_kem` output): blocks of
///   `count`, `seed` (48 bytes), `pk`, `sk`, `ct`, `ss` in uppercase hex. The seed drives NIST's
///   AES-256 CTR_DRBG (`NISTKATRandom`), whose successive outputs are d, z (key generation) and
///   m (encapsulation), as the reference's `randombytes` calls draw them.
///
/// Both files come from the same 100 DRBG seeds, so entry i of one names the same key pair as
/// entry i of the other.
enum KyberKATRunner {
    /// The known-answer files the runner recognises, by file name, and their KEM.
    static let libcruxFiles: [String: KEMKeyType] = ["nistkats_kyber_1024.json": .kyber1024]
    static let responseFiles: [String: KEMKeyType] = ["PQCkemKAT_3168.rsp": .kyber1024]

    private static func outcome(_ name: String, _ body: () throws -> Void) -> ConformanceRunner.Outcome {
        do {
            try body()
            return .init(name: name, failure: nil)
        } catch {
            return .init(name: name, failure: "\(error)")
        }
    }

    // MARK: libcrux JSON

    static func runLibcrux(fileName: String, entries: JSONValue) -> [ConformanceRunner.Outcome] {
        let name = (fileName as NSString).deletingPathExtension
        guard let type = libcruxFiles[fileName] else {
            return [.init(name: name, failure: "a JSON array that is not a known KAT file (\(libcruxFiles.keys.sorted().joined(separator: ", ")))")]
        }
        guard let list = try? entries.array(), !list.isEmpty else { return [.init(name: name, failure: "no entries")] }
        return list.enumerated().map { index, entry in
            outcome("\(name)/\(index)") { try checkLibcruxEntry(entry, type: type, label: "entry \(index)") }
        }
    }

    /// Key generation from `key_generation_seed`, encapsulation with `encapsulation_seed`,
    /// decapsulation; the keys and ciphertext checked by their SHA3-256, the secret directly.
    static func checkLibcruxEntry(_ entry: JSONValue, type: KEMKeyType, label: String) throws {
        let pair = try KEMKeyPair(type, seed: try entry["key_generation_seed"].hex())
        let rawPublic = Array(pair.publicKey.serialized.dropFirst())
        var rawSecret = Array(pair.secretKey.serialize().copyBytes().dropFirst())
        defer { for i in rawSecret.indices { rawSecret[i] = 0 } }
        try expect(try SHA3.sha3_256(rawPublic), try entry["sha3_256_hash_of_public_key"].hex(), "\(label): SHA3-256 of the public key")
        try expect(try SHA3.sha3_256(rawSecret), try entry["sha3_256_hash_of_secret_key"].hex(), "\(label): SHA3-256 of the secret key")
        let (secret, ciphertext) = try pair.publicKey.encapsulate(randomness: try entry["encapsulation_seed"].hex())
        try expect(try SHA3.sha3_256(Array(ciphertext.serialized.dropFirst())), try entry["sha3_256_hash_of_ciphertext"].hex(),
                   "\(label): SHA3-256 of the ciphertext")
        let expected = try entry["shared_secret"].hex()
        try expect(secret.copyBytes(), expected, "\(label): shared secret (encapsulation)")
        try expect(try pair.secretKey.decapsulate(ciphertext).copyBytes(), expected, "\(label): shared secret (decapsulation)")
    }

    // MARK: NIST .rsp

    /// One entry of a `PQCkemKAT_*.rsp` file.
    struct ResponseEntry {
        var count: Int
        var seed: [UInt8]
        var publicKey: [UInt8]
        var secretKey: [UInt8]
        var ciphertext: [UInt8]
        var sharedSecret: [UInt8]
    }

    /// Parses the `name = value` blocks; every block needs all six fields.
    static func parseResponseFile(_ text: String) throws -> [ResponseEntry] {
        var entries: [ResponseEntry] = []
        var fields: [String: String] = [:]
        func flush() throws {
            guard !fields.isEmpty else { return }
            func hex(_ key: String) throws -> [UInt8] {
                guard let value = fields[key], let bytes = [UInt8](hex: value) else {
                    throw VectorError.field("count \(fields["count"] ?? "?").\(key)", "hex")
                }
                return bytes
            }
            guard let countText = fields["count"], let count = Int(countText) else { throw VectorError.field("count", "an integer") }
            entries.append(ResponseEntry(
                count: count, seed: try hex("seed"), publicKey: try hex("pk"), secretKey: try hex("sk"),
                ciphertext: try hex("ct"), sharedSecret: try hex("ss")))
            fields = [:]
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty {
                try flush()
                continue
            }
            if trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { throw VectorError.mismatch("not a `name = value` line: \(trimmed.prefix(40))") }
            fields[parts[0]] = parts[1]
        }
        try flush()
        return entries
    }

    static func runResponseFile(_ path: String) -> [ConformanceRunner.Outcome] {
        let fileName = (path as NSString).lastPathComponent
        let name = (fileName as NSString).deletingPathExtension
        guard let type = responseFiles[fileName] else {
            return [.init(name: name, failure: "not a known KAT response file (\(responseFiles.keys.sorted().joined(separator: ", ")))")]
        }
        let entries: [ResponseEntry]
        do {
            entries = try parseResponseFile(try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            return [.init(name: name, failure: "cannot read the KAT file: \(error)")]
        }
        guard !entries.isEmpty else { return [.init(name: name, failure: "no entries")] }
        return entries.map { entry in
            outcome("\(name)/count=\(entry.count)") { try checkResponseEntry(entry, type: type) }
        }
    }

    /// d, z and m from the entry's DRBG seed, then the full keys, ciphertext and secret.
    static func checkResponseEntry(_ entry: ResponseEntry, type: KEMKeyType) throws {
        var random = try NISTKATRandom(seed: entry.seed)
        let d = try random.generate(32), z = try random.generate(32), m = try random.generate(32)
        let pair = try KEMKeyPair(type, seed: d + z)
        try expect(Array(pair.publicKey.serialized.dropFirst()), entry.publicKey, "pk")
        try expect(Array(pair.secretKey.serialize().copyBytes().dropFirst()), entry.secretKey, "sk")
        let (secret, ciphertext) = try pair.publicKey.encapsulate(randomness: m)
        try expect(Array(ciphertext.serialized.dropFirst()), entry.ciphertext, "ct")
        try expect(secret.copyBytes(), entry.sharedSecret, "ss (encapsulation)")
        let parsed = try KEMSecretKey(serialized: [type.rawValue] + entry.secretKey)
        try expect(try parsed.decapsulate(serialized: [type.rawValue] + entry.ciphertext).copyBytes(), entry.sharedSecret,
                   "ss (decapsulation with the file's sk and ct)")
    }
}

/// NIST's AES-256 CTR_DRBG without a derivation function, as the KAT generators' `rng.c`
/// (`randombytes_init` with no personalization, `randombytes`), for test vectors only: every
/// `generate` encrypts V+1, V+2, ... under the key, then updates (key, V) with no additional
/// input. AES-256 of a single block is CBC with a zero IV.
public struct NISTKATRandom {
    private var key = [UInt8](repeating: 0, count: 32)
    private var v = [UInt8](repeating: 0, count: 16)
    private static let zeroIV = [UInt8](repeating: 0, count: 16)

    /// Instantiates from 48 bytes of entropy.
    public init(seed: [UInt8]) throws {
        guard seed.count == 48 else { throw VectorError.mismatch("a DRBG seed is 48 bytes, not \(seed.count)") }
        try update(seed)
    }

    /// The next `count` output bytes.
    public mutating func generate(_ count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count + 16)
        while out.count < count { out += try nextBlock() }
        try update(nil)
        return Array(out.prefix(count))
    }

    private mutating func nextBlock() throws -> [UInt8] {
        for i in stride(from: 15, through: 0, by: -1) {
            v[i] &+= 1
            if v[i] != 0 { break }
        }
        return try AES256CBC.encrypt(v, key: key, iv: Self.zeroIV, padding: false)
    }

    private mutating func update(_ provided: [UInt8]?) throws {
        var temp = try nextBlock() + nextBlock() + nextBlock()
        if let provided { for i in 0..<48 { temp[i] ^= provided[i] } }
        key = Array(temp[0..<32])
        v = Array(temp[32..<48])
    }
}
