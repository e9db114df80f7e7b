import ParleyCrypto
import ParleyProtocol

/// Replays a `"kind": "group"` vector: the sender's state from `sender_draws`, the receiver
/// joining at the `distribute` event, sends byte for byte, receives and rejects.
struct GroupVectorRunner {
    let vector: JSONValue

    static let groupId = "group"
    static let senderAddress = ProtocolAddress(name: "sender", deviceId: 1)

    func run() throws {
        let d = vector["sender_draws"]
        let keyId = try d["key_id"].uint32()
        let idBytes = (0..<4).map { UInt8((keyId >> (8 * UInt32($0))) & 0xFF) }
        var draws: [[UInt8]] = [idBytes, try d["chain_key_seed"].hex(), try d["signing_private"].hex()]
        draws += try d["signature_randoms"].array().map { try $0.hex() }
        let random = ScriptedRandom(owner: "sender", draws: draws)

        let name = SenderKeyName(groupId: Self.groupId, sender: Self.senderAddress)
        let senderStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiverStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        // The sender's state exists from the start of the vector.
        let initial = try GroupCipher.createDistributionMessage(for: name, store: senderStore, random: random)
        try expect(initial.signingKey.serialized, try d["signing_public"].hex(), "signing_public")

        var bySeq: [Int: JSONValue] = [:]
        for m in try vector["messages"].array() { bySeq[try m["seq"].int()] = m }
        var rejectsAfter: [Int: [JSONValue]] = [:]
        for r in try vector["rejects"].array() { rejectsAfter[try r["after_event"].int(), default: []].append(r) }

        func snapshot() throws -> [UInt8] {
            try receiverStore.loadSenderKey(for: name)?.serialized() ?? []
        }
        func runRejects(_ list: [JSONValue]) throws {
            try RejectVectors.run(list, snapshot: snapshot) { bytes in
                _ = try GroupCipher.decrypt(try SenderKeyMessage(serialized: bytes), from: name, store: receiverStore)
            }
        }

        try runRejects(rejectsAfter[-1] ?? [])
        for (index, event) in try vector["events"].array().enumerated() {
            switch try event["op"].string() {
            case "distribute":
                let skdm = try GroupCipher.createDistributionMessage(for: name, store: senderStore, random: random)
                try expect(skdm.serialized, try vector["distribution_message"].hex(), "distribution_message")
                let received = try SenderKeyDistributionMessage(serialized: try vector["distribution_message"].hex())
                try GroupCipher.process(received, for: name, store: receiverStore)
            case "send":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("no message \(seq)") }
                let out = try GroupCipher.encrypt(try m["plaintext"].hex(), for: name, store: senderStore, random: random)
                try expect(out.serialized, try m["ciphertext"].hex(), "seq \(seq) ciphertext")
            case "recv":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("no message \(seq)") }
                let plaintext: [UInt8]
                do {
                    let message = try SenderKeyMessage(serialized: try m["ciphertext"].hex())
                    plaintext = try GroupCipher.decrypt(message, from: name, store: receiverStore)
                } catch {
                    throw VectorError.mismatch("seq \(seq): decryption failed: \(error)")
                }
                try expect(plaintext, try m["plaintext"].hex(), "seq \(seq) plaintext")
            case let op:
                throw VectorError.mismatch("event \(index): unknown op \(op)")
            }
            if !random.errors.isEmpty { throw VectorError.mismatch(random.errors.joined(separator: "; ")) }
            try runRejects(rejectsAfter[index] ?? [])
        }
        guard random.remaining == 0 else { throw VectorError.mismatch("sender left \(random.remaining) draws unconsumed") }
    }
}
