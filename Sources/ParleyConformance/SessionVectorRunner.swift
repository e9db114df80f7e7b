import ParleyCrypto
import ParleyProtocol

/// Replays a `"kind": "session"` vector: both parties' keys and draws injected, every send
/// reproduced byte for byte, every receive checked, every reject attempted at its point and
/// proven harmless by comparing the party's stores before and after.
///
/// Version 3 vectors (no `"version"`, python-axolotl transcripts) run under
/// `SessionPolicy.allowClassical`, version 4 vectors (PQXDH, `../shared/specs/test-vectors-v4.md`)
/// under the default `requirePostQuantum`, with Bob's Kyber prekey and the `bundle_rejects`.
struct SessionVectorRunner {
    let vector: JSONValue

    final class Party {
        let name: String
        let store: InMemoryProtocolStore
        let random: ScriptedRandom
        let peer: ProtocolAddress
        let policy: SessionPolicy

        init(name: String, store: InMemoryProtocolStore, random: ScriptedRandom, peer: ProtocolAddress, policy: SessionPolicy) {
            self.name = name
            self.store = store
            self.random = random
            self.peer = peer
            self.policy = policy
        }

        /// Everything a rejected message must leave untouched, as bytes.
        func snapshot() throws -> [String] {
            var lines: [String] = []
            for (address, record) in store.sessions.sorted(by: { $0.key.description < $1.key.description }) {
                lines.append("session \(address) \(try record.serialized().hexString)")
            }
            for id in store.preKeys.keys.sorted() { lines.append("prekey \(id)") }
            for id in store.signedPreKeys.keys.sorted() { lines.append("signed prekey \(id)") }
            for id in store.kyberPreKeys.keys.sorted() { lines.append("kyber prekey \(id)") }
            for use in store.kyberPreKeyUses.map({ "kyber use \($0.kyberPreKeyId) \($0.signedPreKeyId) \($0.baseKey.serialized.hexString)" }).sorted() {
                lines.append(use)
            }
            for (address, key) in store.identities.sorted(by: { $0.key.description < $1.key.description }) {
                lines.append("identity \(address) \(key.serialized.hexString)")
            }
            return lines
        }

        func decrypt(type: String, ciphertext: [UInt8]) throws -> [UInt8] {
            if type == "prekey" {
                let message = try PreKeySignalMessage(serialized: ciphertext)
                return try SessionCipher.decrypt(message, from: peer, store: store, policy: policy, random: random)
            } else {
                let message = try SignalMessage(serialized: ciphertext)
                return try SessionCipher.decrypt(message, from: peer, store: store, random: random)
            }
        }
    }

    static let aliceAddress = ProtocolAddress(name: "alice", deviceId: 1)
    static let bobAddress = ProtocolAddress(name: "bob", deviceId: 1)

    func run() throws {
        let version = vector["version"].exists ? try vector["version"].int() : Int(Limits.preKyberVersion)
        guard version == Int(Limits.preKyberVersion) || version == Int(Limits.kyberVersion) else {
            throw VectorError.mismatch("session version \(version) is not 3 or 4")
        }
        let policy: SessionPolicy = version == Int(Limits.kyberVersion) ? .requirePostQuantum : .allowClassical
        let a = vector["alice"], b = vector["bob"]
        let aliceIdentity = IdentityKeyPair(privateKey: try PrivateKey(bytes: try a["identity_private"].hex()))
        let bobIdentity = IdentityKeyPair(privateKey: try PrivateKey(bytes: try b["identity_private"].hex()))
        try expect(aliceIdentity.identityKey.serialized, try a["identity_public"].hex(), "alice identity_public")
        try expect(bobIdentity.identityKey.serialized, try b["identity_public"].hex(), "bob identity_public")

        let alice = Party(
            name: "alice",
            store: InMemoryProtocolStore(identity: aliceIdentity, registrationId: try a["registration_id"].uint32()),
            random: ScriptedRandom(owner: "alice", draws: try a["draws"].array().map { try $0.hex() }),
            peer: Self.bobAddress, policy: policy)
        let bob = Party(
            name: "bob",
            store: InMemoryProtocolStore(identity: bobIdentity, registrationId: try b["registration_id"].uint32()),
            random: ScriptedRandom(owner: "bob", draws: try b["draws"].array().map { try $0.hex() }),
            peer: Self.aliceAddress, policy: policy)

        // Bob's published keys.
        let spk = b["signed_prekey"]
        let spkPair = try PrivateKey(bytes: try spk["private"].hex())
        try expect(spkPair.publicKey.serialized, try spk["public"].hex(), "bob signed_prekey.public")
        let signature = try spk["signature"].hex()
        let resigned = try XEdDSA.sign(spkPair.publicKey.serialized, with: bobIdentity.privateKey, random: try spk["signature_random"].hex())
        try expect(resigned, signature, "signed prekey signature recomputed from signature_random")
        bob.store.storeSignedPreKey(
            SignedPreKeyRecord(id: try spk["id"].uint32(), keyPair: spkPair, signature: signature, timestamp: 0))
        var oneTime: (UInt32, PublicKey)? = nil
        if b["one_time_prekey"].exists {
            let otk = b["one_time_prekey"]
            let pair = try PrivateKey(bytes: try otk["private"].hex())
            try expect(pair.publicKey.serialized, try otk["public"].hex(), "bob one_time_prekey.public")
            bob.store.storePreKey(PreKeyRecord(id: try otk["id"].uint32(), keyPair: pair))
            oneTime = (try otk["id"].uint32(), pair.publicKey)
        }

        var kyber: PreKeyBundle.KyberPreKey? = nil
        if b["kyber_prekey"].exists {
            let kpk = b["kyber_prekey"]
            let pair = try KEMKeyPair(.kyber1024, seed: try kpk["keygen_seed"].hex())
            try expect(pair.publicKey.serialized, try kpk["public"].hex(), "bob kyber_prekey.public")
            try expect(pair.secretKey.serialize().copyBytes(), try kpk["secret"].hex(), "bob kyber_prekey.secret")
            let kyberSignature = try kpk["signature"].hex()
            let resignedKyber = try XEdDSA.sign(
                pair.publicKey.serialized, with: bobIdentity.privateKey, random: try kpk["signature_random"].hex())
            try expect(resignedKyber, kyberSignature, "Kyber prekey signature recomputed from signature_random")
            let id = try kpk["id"].uint32()
            bob.store.storeKyberPreKey(
                KyberPreKeyRecord(id: id, keyPair: pair, signature: kyberSignature, timestamp: 0, isLastResort: try kpk["last_resort"].bool()))
            kyber = PreKeyBundle.KyberPreKey(id: id, publicKey: pair.publicKey, signature: kyberSignature)
        } else if version == Int(Limits.kyberVersion) {
            throw VectorError.mismatch("a version-4 vector without bob.kyber_prekey")
        }

        // Bundles Alice must refuse, each on a fresh Alice that must create nothing and draw nothing.
        if vector["bundle_rejects"].exists {
            for r in try vector["bundle_rejects"].array() {
                let id = try r["id"].string(), reason = try r["reason"].string()
                let fresh = InMemoryProtocolStore(identity: aliceIdentity, registrationId: try a["registration_id"].uint32())
                let noDraws = ScriptedRandom(owner: "alice (bundle reject \(id))", draws: [])
                do {
                    let bundle = try Self.bundle(r["bundle"])
                    try SessionBuilder.process(bundle: bundle, for: Self.bobAddress, store: fresh, policy: policy, random: noDraws)
                    throw VectorError.mismatch("bundle reject \(id) (\(reason)) was accepted")
                } catch let error as ProtocolError {
                    guard error.kind == reason else {
                        throw VectorError.mismatch("bundle reject \(id): expected \(reason), got \(error.kind) (\(error))")
                    }
                }
                guard fresh.sessions.isEmpty, fresh.identities.isEmpty else {
                    throw VectorError.mismatch("bundle reject \(id) (\(reason)) left a session or an identity")
                }
                guard noDraws.position == 0, noDraws.errors.isEmpty else {
                    throw VectorError.mismatch("bundle reject \(id) (\(reason)) drew randomness")
                }
            }
        }

        // Alice processes Bob's bundle (draws: base key, [KEM randomness,] first ratchet key).
        let bundle = PreKeyBundle(
            registrationId: try b["registration_id"].uint32(), deviceId: 1, identityKey: bobIdentity.identityKey,
            signedPreKeyId: try spk["id"].uint32(), signedPreKey: spkPair.publicKey, signedPreKeySignature: signature,
            preKeyId: oneTime?.0, preKey: oneTime?.1, kyberPreKey: kyber)
        try SessionBuilder.process(bundle: bundle, for: Self.bobAddress, store: alice.store, policy: policy, random: alice.random)

        let messages = try vector["messages"].array()
        var bySeq: [Int: JSONValue] = [:]
        for m in messages { bySeq[try m["seq"].int()] = m }
        let events = try vector["events"].array()
        var rejectsAfter: [Int: [JSONValue]] = [:]
        for r in try vector["rejects"].array() { rejectsAfter[try r["after_event"].int(), default: []].append(r) }
        func party(_ name: String) throws -> Party {
            switch name {
            case "alice": return alice
            case "bob": return bob
            default: throw VectorError.mismatch("unknown party \(name)")
            }
        }

        let runRejects = { (list: [JSONValue]) throws in try self.runRejects(list, version: version, party: party) }
        try runRejects(rejectsAfter[-1] ?? [])
        for (index, event) in events.enumerated() {
            let op = try event["op"].string()
            switch op {
            case "send":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("event \(index): no message \(seq)") }
                let sender = try party(try m["from"].string())
                let out = try SessionCipher.encrypt(try m["plaintext"].hex(), for: sender.peer, store: sender.store)
                let expectedType = try m["type"].string() == "prekey" ? 3 : 2
                guard out.type == expectedType else {
                    throw VectorError.mismatch("seq \(seq): produced type \(out.type), expected \(expectedType)")
                }
                try expect(out.serialized, try m["ciphertext"].hex(), "seq \(seq) ciphertext")
            case "recv":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("event \(index): no message \(seq)") }
                let receiver = try party(try m["to"].string())
                let plaintext: [UInt8]
                do {
                    plaintext = try receiver.decrypt(type: try m["type"].string(), ciphertext: try m["ciphertext"].hex())
                } catch {
                    throw VectorError.mismatch("seq \(seq): decryption failed: \(error)")
                }
                try expect(plaintext, try m["plaintext"].hex(), "seq \(seq) plaintext")
            case "advance":
                let who = try party(try event["party"].string())
                let steps = try event["steps"].int()
                // Exactly as if `steps` messages were encrypted and never delivered.
                for _ in 0..<steps { _ = try SessionCipher.encrypt([], for: who.peer, store: who.store) }
            default:
                throw VectorError.mismatch("event \(index): unknown op \(op)")
            }
            try checkRandom(alice, bob)
            try runRejects(rejectsAfter[index] ?? [])
        }
        try checkRandom(alice, bob)
        for p in [alice, bob] where p.random.remaining != 0 {
            throw VectorError.mismatch("\(p.name) left \(p.random.remaining) draws unconsumed")
        }
    }

    private func checkRandom(_ parties: Party...) throws {
        for p in parties where !p.random.errors.isEmpty {
            throw VectorError.mismatch(p.random.errors.joined(separator: "; "))
        }
    }

    /// A bundle as the v4 vectors give it to Alice (`bundle_rejects[].bundle`). A Kyber public
    /// key that does not deserialize fails here, as it does when a bundle is received.
    static func bundle(_ b: JSONValue) throws -> PreKeyBundle {
        let spk = b["signed_prekey"]
        var oneTime: (UInt32, PublicKey)? = nil
        if b["one_time_prekey"].exists {
            oneTime = (try b["one_time_prekey"]["id"].uint32(), try PublicKey(serialized: try b["one_time_prekey"]["public"].hex()))
        }
        var kyber: PreKeyBundle.KyberPreKey? = nil
        if b["kyber_prekey"].exists {
            let k = b["kyber_prekey"]
            kyber = try PreKeyBundle.KyberPreKey(
                id: try k["id"].uint32(), serializedPublicKey: try k["public"].hex(), signature: try k["signature"].hex())
        }
        return PreKeyBundle(
            registrationId: try b["registration_id"].uint32(), deviceId: try b["device_id"].uint32(),
            identityKey: try IdentityKey(serialized: try b["identity_public"].hex()),
            signedPreKeyId: try spk["id"].uint32(), signedPreKey: try PublicKey(serialized: try spk["public"].hex()),
            signedPreKeySignature: try spk["signature"].hex(), preKeyId: oneTime?.0, preKey: oneTime?.1, kyberPreKey: kyber)
    }

    private func runRejects(_ rejects: [JSONValue], version: Int, party: (String) throws -> Party) throws {
        for r in rejects {
            let id = try r["id"].string()
            var reason = try r["reason"].string()
            let receiver = try party(try r["to"].string())
            let before = try receiver.snapshot()
            let type = try r["type"].string(), ciphertext = try r["ciphertext"].hex()
            // The version-3 vectors come from a reader that speaks version 3 only, for which a
            // PreKeySignalMessage with version nibble 4 is an unknown version. Parley reads
            // version 4, and such a message without the Kyber fields is libsignal's
            // "Kyber pre key must be present" (Specs/test-vectors.md, "Version-3 vectors").
            if version == Int(Limits.preKyberVersion), type == "prekey", reason == "bad_version",
               ciphertext.first.map({ $0 >> 4 == Limits.kyberVersion }) == true
            {
                reason = "invalid_kyber"
            }
            do {
                // A reject that carries an unknown ratchet key draws before its MAC fails; that
                // draw is not in the transcript, so it comes from the scratch source.
                _ = try receiver.random.duringReject { try receiver.decrypt(type: type, ciphertext: ciphertext) }
                throw VectorError.mismatch("reject \(id) (\(reason)) was accepted")
            } catch let error as ProtocolError {
                guard error.kind == reason else {
                    throw VectorError.mismatch("reject \(id): expected \(reason), got \(error.kind) (\(error))")
                }
            }
            let after = try receiver.snapshot()
            guard before == after else { throw VectorError.mismatch("reject \(id) (\(reason)) changed \(receiver.name)'s state") }
        }
    }
}

func expect(_ actual: [UInt8], _ expected: [UInt8], _ what: String) throws {
    guard actual != expected else { return }
    let common = min(actual.count, expected.count)
    let offset = (0..<common).first { actual[$0] != expected[$0] } ?? common
    let window = { (bytes: [UInt8]) in bytes[offset..<min(bytes.count, offset + 16)].hexString }
    throw VectorError.mismatch(
        "\(what) differs at byte \(offset) (lengths \(actual.count) and \(expected.count)): got \(window(actual)), expected \(window(expected))")
}
