import Foundation
import ParleyCrypto
import ParleyProtocol

/// Replays a `"kind": "sender_key"` vector (libsignal's current Sender Key layout,
/// `../shared/specs/test-vectors-v4.md` §4): the sender's states, one per distribution id,
/// exist from the start (made from scripted draws: chain id, chain key, signing key); each
/// `distribute` hands the receiver the distribution message of that id, which must match
/// byte for byte; sends reproduce ciphertexts; receives and rejects as in the other kinds.
///
/// Records are kept per (sender, distribution id), as libsignal keys them: the runner names a
/// record by its distribution id.
struct SenderKeyVectorRunner {
    let vector: JSONValue

    static let receiverAddress = ProtocolAddress(name: "receiver", deviceId: 1)

    static func name(_ distributionId: UUID, sender: ProtocolAddress) -> SenderKeyName {
        SenderKeyName(groupId: distributionId.uuidString.lowercased(), sender: sender)
    }

    static func uuid(_ value: JSONValue) throws -> UUID {
        guard let id = UUID(uuidString: try value.string()) else { throw VectorError.field(value.path, "a UUID") }
        return id
    }

    func run() throws {
        let sender = ProtocolAddress(name: try vector["sender"].string(), deviceId: 1)
        var draws: [[UInt8]] = []
        var distributions: [UUID] = []
        for d in try vector["distributions"].array() {
            let chainId = try d["chain_id"].uint32()
            guard chainId <= 0x7FFF_FFFF else { throw VectorError.field(d["chain_id"].path, "a 31-bit chain id") }
            // libsignal draws a u32 (little-endian) and shifts it right by one.
            let raw = chainId << 1
            draws += [(0..<4).map { UInt8((raw >> (8 * UInt32($0))) & 0xFF) }, try d["chain_key_seed"].hex(), try d["signing_private"].hex()]
            distributions.append(try Self.uuid(d["distribution_id"]))
        }
        draws += try vector["signature_randoms"].array().map { try $0.hex() }
        let random = ScriptedRandom(owner: "sender", draws: draws)
        let senderStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiverStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)

        for (d, id) in zip(try vector["distributions"].array(), distributions) {
            let initial = try GroupCipher.createDistributionMessage(
                for: Self.name(id, sender: sender), distributionId: id, store: senderStore, random: random)
            try expect(initial.signingKey.serialized, try d["signing_public"].hex(), "\(id) signing_public")
            guard initial.chainId == (try d["chain_id"].uint32()), initial.distributionId == id else {
                throw VectorError.mismatch("\(id): state made with chain id \(initial.chainId)")
            }
        }

        var bySeq: [Int: JSONValue] = [:]
        for m in try vector["messages"].array() { bySeq[try m["seq"].int()] = m }
        let distributionMessages = try vector["distribution_messages"].array()
        var rejectsAfter: [Int: [JSONValue]] = [:]
        for r in try vector["rejects"].array() { rejectsAfter[try r["after_event"].int(), default: []].append(r) }

        /// Receives as a client would: the record named by the message's distribution id.
        func receive(_ bytes: [UInt8]) throws -> [UInt8] {
            let message = try SenderKeyMessage(serialized: bytes)
            guard let id = message.distributionId else { throw VectorError.mismatch("a message in the old layout") }
            return try GroupCipher.decrypt(message, from: Self.name(id, sender: sender), store: receiverStore)
        }
        func snapshot() throws -> [String] {
            try receiverStore.senderKeys.sorted { $0.key.description < $1.key.description }.map {
                "\($0.key) \(try $0.value.serialized().hexString)"
            }
        }
        func runRejects(_ list: [JSONValue]) throws {
            try RejectVectors.run(list, snapshot: snapshot) { _ = try receive($0) }
        }

        try runRejects(rejectsAfter[-1] ?? [])
        for (index, event) in try vector["events"].array().enumerated() {
            switch try event["op"].string() {
            case "distribute":
                let id = try Self.uuid(event["distribution_id"])
                let entryIndex = try event["index"].int()
                guard distributionMessages.indices.contains(entryIndex) else { throw VectorError.mismatch("no distribution message \(entryIndex)") }
                let entry = distributionMessages[entryIndex]
                let expected = try entry["message"].hex()
                let skdm = try GroupCipher.createDistributionMessage(
                    for: Self.name(id, sender: sender), distributionId: id, store: senderStore, random: random)
                try expect(skdm.serialized, expected, "distribution_messages[\(entryIndex)]")
                let received = try SenderKeyDistributionMessage(serialized: expected)
                guard let receivedId = received.distributionId else { throw VectorError.mismatch("distribution message in the old layout") }
                try GroupCipher.process(received, for: Self.name(receivedId, sender: sender), store: receiverStore)
            case "send":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("no message \(seq)") }
                let id = try Self.uuid(m["distribution_id"])
                let out = try GroupCipher.encrypt(try m["plaintext"].hex(), for: Self.name(id, sender: sender), store: senderStore, random: random)
                try expect(out.serialized, try m["ciphertext"].hex(), "seq \(seq) ciphertext")
            case "recv":
                let seq = try event["seq"].int()
                guard let m = bySeq[seq] else { throw VectorError.mismatch("no message \(seq)") }
                let plaintext: [UInt8]
                do { plaintext = try receive(try m["ciphertext"].hex()) } catch {
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
