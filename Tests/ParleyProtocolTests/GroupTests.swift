import ParleyCrypto
@testable import ParleyProtocol
import Testing

@Suite struct GroupTests {
    let name = SenderKeyName(groupId: "g", sender: aliceAddress)

    func members() throws -> (InMemoryProtocolStore, InMemoryProtocolStore) {
        let sender = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let receiver = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 2)
        let skdm = try GroupCipher.createDistributionMessage(for: name, store: sender)
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: skdm.serialized), for: name, store: receiver)
        return (sender, receiver)
    }

    func decrypt(_ m: SenderKeyMessage, _ store: InMemoryProtocolStore) throws -> [UInt8] {
        try GroupCipher.decrypt(try SenderKeyMessage(serialized: m.serialized), from: name, store: store)
    }

    @Test func outOfOrderAndDuplicates() throws {
        var rng = SeededGenerator(state: 11)
        let (sender, receiver) = try members()
        let messages = try (0..<200).map { try GroupCipher.encrypt(Array("g\($0)".utf8), for: name, store: sender) }
        for (i, m) in messages.enumerated().shuffled(using: &rng) {
            #expect(try decrypt(m, receiver) == Array("g\(i)".utf8))
        }
        let before = try snapshot(receiver)
        #expect(throws: ProtocolError.self) { try decrypt(messages[3], receiver) }
        #expect(try snapshot(receiver) == before)
    }

    @Test func forgedOrCorruptMessagesChangeNothing() throws {
        var rng = SeededGenerator(state: 12)
        let (sender, receiver) = try members()
        for round in 0..<100 {
            let m = try GroupCipher.encrypt(Array("r\(round)".utf8), for: name, store: sender)
            var bytes = m.serialized
            bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            let before = try snapshot(receiver)
            #expect(throws: ProtocolError.self) {
                _ = try GroupCipher.decrypt(try SenderKeyMessage(serialized: bytes), from: name, store: receiver)
            }
            #expect(try snapshot(receiver) == before)
            #expect(try decrypt(m, receiver) == Array("r\(round)".utf8))
        }
    }

    @Test func forwardJumpLimit() throws {
        let (sender, receiver) = try members()
        for _ in 0..<Limits.maxSenderKeyForwardJumps { _ = try GroupCipher.encrypt([0], for: name, store: sender) }
        #expect(try decrypt(try GroupCipher.encrypt([1], for: name, store: sender), receiver) == [1])
        for _ in 0...Limits.maxSenderKeyForwardJumps { _ = try GroupCipher.encrypt([0], for: name, store: sender) }
        let far = try GroupCipher.encrypt([2], for: name, store: sender)
        do { _ = try decrypt(far, receiver); Issue.record("accepted") } catch let e as ProtocolError { #expect(e.kind == "too_far_ahead") }
    }

    @Test func unknownSenderKey() throws {
        let (sender, _) = try members()
        let stranger = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 3)
        let m = try GroupCipher.encrypt([1], for: name, store: sender)
        #expect(throws: ProtocolError.noSenderKey(groupId: "g", keyId: m.keyId)) { try decrypt(m, stranger) }
    }

    @Test func replayedDistributionDoesNotRewind() throws {
        let (sender, receiver) = try members()
        let skdm = try GroupCipher.createDistributionMessage(for: name, store: sender)
        let m = try GroupCipher.encrypt([9], for: name, store: sender)
        _ = try decrypt(m, receiver)
        try GroupCipher.process(skdm, for: name, store: receiver)
        #expect(throws: ProtocolError.self) { try decrypt(m, receiver) }
    }

    @Test func recordsSerialize() throws {
        let (sender, receiver) = try members()
        _ = try GroupCipher.encrypt([1], for: name, store: sender)
        for store in [sender, receiver] {
            let record = try #require(store.loadSenderKey(for: name))
            let bytes = try record.serialized()
            #expect(try SenderKeyRecord(serialized: bytes).serialized() == bytes)
        }
        #expect(throws: ProtocolError.self) { try SenderKeyRecord(serialized: [1, 2, 3]) }
    }
}
