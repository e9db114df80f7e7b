import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// SessionCipher and GroupCipher running on two DeviceStores: real X3DH, messages both ways,
/// then both database files closed and reopened and the conversation continued.
@Suite struct SessionPersistenceTests {
    @Test(arguments: [(false, false), (true, true), (true, false)])
    func pairwiseConversationSurvivesReopening(aliceSealed: Bool, bobSealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: aliceSealed)
        var bob = try TestDevice.create(name: "bob", in: dir, sealed: bobSealed)
        let bundle = try bob.publishBundle(preKeyId: 11, signedPreKeyId: 5)

        try SessionBuilder.process(bundle: bundle, for: bob.address, store: alice.store)
        let first = try encrypt("hello bob", to: bob.address, store: alice.store)
        guard case .preKey = first else { throw TestFailure("first message must be a PreKeySignalMessage") }
        #expect(try decrypt(first, from: alice.address, store: bob.store) == "hello bob")
        // X3DH consumed Bob's one-time prekey and recorded Alice's identity.
        #expect(try bob.store.loadPreKey(id: 11) == nil)
        #expect(try bob.store.identity(for: alice.address) == alice.identity.identityKey)
        #expect(try alice.store.identity(for: bob.address) == bob.identity.identityKey)

        let reply = try encrypt("hi alice", to: alice.address, store: bob.store)
        guard case .signal = reply else { throw TestFailure("a reply must be a SignalMessage") }
        #expect(try decrypt(reply, from: bob.address, store: alice.store) == "hi alice")
        for i in 0..<3 {
            #expect(try decrypt(try encrypt("a\(i)", to: bob.address, store: alice.store), from: alice.address, store: bob.store) == "a\(i)")
            #expect(try decrypt(try encrypt("b\(i)", to: alice.address, store: bob.store), from: bob.address, store: alice.store) == "b\(i)")
        }
        // One message Alice sends before the restart and Bob only reads after it (skipped keys
        // and chain positions must be on disk on both sides).
        let inFlight = try encrypt("sent before the restart", to: bob.address, store: alice.store)
        let afterInFlight = try encrypt("and another", to: bob.address, store: alice.store)

        try alice.reopen()
        try bob.reopen()

        #expect(try decrypt(afterInFlight, from: alice.address, store: bob.store) == "and another")
        #expect(try decrypt(inFlight, from: alice.address, store: bob.store) == "sent before the restart")
        // Replaying a message after the restart is still detected.
        #expect(throws: ProtocolError.self) { try decrypt(inFlight, from: alice.address, store: bob.store) }
        for i in 0..<3 {
            let toBob = try encrypt("after \(i)", to: bob.address, store: alice.store)
            guard case .signal = toBob else { throw TestFailure("the session must not fall back to prekey messages") }
            #expect(try decrypt(toBob, from: alice.address, store: bob.store) == "after \(i)")
            try bob.reopen()
            #expect(try decrypt(try encrypt("back \(i)", to: alice.address, store: bob.store), from: bob.address, store: alice.store) == "back \(i)")
            try alice.reopen()
        }
    }

    @Test(arguments: [false, true])
    func groupConversationSurvivesReopening(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var alice = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        var bob = try TestDevice.create(name: "bob", in: dir, sealed: sealed)
        let group = "3f2b8c1e-0000-4000-8000-000000000001"
        let aliceName = SenderKeyName(groupId: group, sender: alice.address)
        let bobName = SenderKeyName(groupId: group, sender: bob.address)

        // Distribution messages travel (over pairwise sessions in the real client) as bytes.
        let aliceDistribution = try GroupCipher.createDistributionMessage(for: aliceName, store: alice.store)
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: aliceDistribution.serialized), for: aliceName, store: bob.store)
        let bobDistribution = try GroupCipher.createDistributionMessage(for: bobName, store: bob.store)
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: bobDistribution.serialized), for: bobName, store: alice.store)

        func send(_ text: String, from sender: TestDevice, _ name: SenderKeyName, to receiver: TestDevice) throws -> String {
            let message = try GroupCipher.encrypt(Array(text.utf8), for: name, store: sender.store)
            let received = try SenderKeyMessage(serialized: message.serialized)
            return String(decoding: try GroupCipher.decrypt(received, from: name, store: receiver.store), as: UTF8.self)
        }
        #expect(try send("g1", from: alice, aliceName, to: bob) == "g1")
        #expect(try send("g2", from: bob, bobName, to: alice) == "g2")
        let early = try GroupCipher.encrypt(Array("read after restart".utf8), for: aliceName, store: alice.store)
        #expect(try send("g3", from: alice, aliceName, to: bob) == "g3")

        try alice.reopen()
        try bob.reopen()

        // Out of order across the restart: the skipped message key was persisted.
        #expect(String(decoding: try GroupCipher.decrypt(early, from: aliceName, store: bob.store), as: UTF8.self) == "read after restart")
        #expect(throws: ProtocolError.self) { try GroupCipher.decrypt(early, from: aliceName, store: bob.store) }
        #expect(try send("g4", from: alice, aliceName, to: bob) == "g4")
        #expect(try send("g5", from: bob, bobName, to: alice) == "g5")
        // The sender's chain moved on and was persisted: the distribution message after the
        // restart describes the same key at a later iteration.
        let later = try GroupCipher.createDistributionMessage(for: aliceName, store: alice.store)
        #expect(later.keyId == aliceDistribution.keyId)
        #expect(later.iteration > aliceDistribution.iteration)
    }
}
