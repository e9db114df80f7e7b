import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import Testing

/// `DeviceStore.transaction`: one protocol operation plus its bookkeeping commits together or
/// not at all.
@Suite struct TransactionTests {
    struct Interrupted: Error, Equatable {}

    @Test func aThrownErrorRollsEverythingBack() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let conversation = try device.store.directConversation(with: "bob")
        let bob = ProtocolAddress(name: "bob", deviceId: 1)
        let preKey = PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared))

        #expect(throws: Interrupted.self) {
            try device.store.transaction { store in
                try store.storePreKey(preKey)
                try store.saveIdentity(try IdentityKeyPair.generate().identityKey, for: bob)
                try store.storeSession(SessionRecord(), for: bob)
                _ = try store.insertMessage(
                    NewMessage(conversation: conversation.id, sender: bob, outgoing: false, receivedAt: 5, body: "lost"))
                // Inside the transaction the writes are visible...
                #expect(try store.loadPreKey(id: 1) != nil)
                #expect(try store.messages(in: conversation.id, limit: 10).messages.count == 1)
                throw Interrupted()
            }
        }
        // ...and after the error none of them is, before or after reopening.
        for _ in 0..<2 {
            #expect(try device.store.loadPreKey(id: 1) == nil)
            #expect(try device.store.identity(for: bob) == nil)
            #expect(try device.store.loadSession(for: bob) == nil)
            #expect(try device.store.messages(in: conversation.id, limit: 10).messages.isEmpty)
            #expect(try device.store.searchMessages("lost").isEmpty)
            try device.reopen()
        }

        let value = try device.store.transaction { store -> Int in
            try store.storePreKey(preKey)
            return 42
        }
        #expect(value == 42)
        try device.reopen()
        #expect(try device.store.loadPreKey(id: 1)?.keyPair.publicKey == preKey.keyPair.publicKey)
    }

    /// The receive path: decrypting a PreKeySignalMessage writes the session, the identity and
    /// removes the one-time prekey; storing the message is part of the same transaction. If the
    /// process fails before the message is stored, nothing of the decryption remains, so the
    /// same envelope (redelivered by the relay) decrypts again.
    @Test(arguments: [false, true])
    func decryptAndStoreCommitTogether(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        var bob = try TestDevice.create(name: "bob", in: dir, sealed: sealed)
        try SessionBuilder.process(bundle: try bob.publishBundle(preKeyId: 21), for: bob.address, store: alice.store)
        let envelope = try encrypt("exactly once", to: bob.address, store: alice.store)
        let serverId = UUID()
        let conversation = try bob.store.directConversation(with: "alice")

        func receive(failBeforeCommit: Bool) throws -> MessageID {
            try bob.store.transaction { store in
                let text = try decrypt(envelope, from: alice.address, store: store)
                let result = try store.insertMessage(
                    NewMessage(
                        conversation: conversation.id, serverId: serverId, sender: alice.address, outgoing: false,
                        receivedAt: 1000, body: text))
                if failBeforeCommit { throw Interrupted() }
                return result.id
            }
        }

        #expect(throws: Interrupted.self) { try receive(failBeforeCommit: true) }
        #expect(try bob.store.loadSession(for: alice.address) == nil)
        #expect(try bob.store.loadPreKey(id: 21) != nil)
        #expect(try bob.store.identity(for: alice.address) == nil)
        #expect(try bob.store.messageId(serverId: serverId) == nil)

        try bob.reopen()
        let id = try receive(failBeforeCommit: false)
        try bob.reopen()
        #expect(try bob.store.message(id: id)?.body == "exactly once")
        #expect(try bob.store.loadPreKey(id: 21) == nil)
        #expect(try bob.store.loadSession(for: alice.address)?.hasCurrentSession == true)
        // The session continues from the committed state.
        let reply = try encrypt("got it", to: alice.address, store: bob.store)
        #expect(try decrypt(reply, from: bob.address, store: alice.store) == "got it")
    }

    @Test func nestedTransactionsAreSavepoints() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let keys = try (1...3).map { PreKeyRecord(id: UInt32($0), keyPair: try PrivateKey.generate(using: SystemRandom.shared)) }
        try device.store.transaction { store in
            try store.storePreKey(keys[0])
            do {
                try store.transaction { inner in
                    try inner.storePreKey(keys[1])
                    throw Interrupted()
                }
            } catch is Interrupted {}
            try store.transaction { inner in try inner.storePreKey(keys[2]) }
        }
        try device.reopen()
        #expect(try device.store.preKeyIds() == [1, 3])
    }

    @Test func protocolErrorsInsideATransactionLeaveNoTrace() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let alice = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let bob = try TestDevice.create(name: "bob", in: dir, sealed: false)
        try SessionBuilder.process(bundle: try bob.publishBundle(), for: bob.address, store: alice.store)
        let good = try encrypt("first", to: bob.address, store: alice.store)
        #expect(try decrypt(good, from: alice.address, store: bob.store) == "first")
        #expect(try decrypt(try encrypt("reply", to: alice.address, store: bob.store), from: bob.address, store: alice.store) == "reply")
        let before = try #require(try bob.store.loadSession(for: alice.address)).serialized()
        // A tampered message fails with the protocol's own error, rethrown unchanged.
        let second = try encrypt("second", to: bob.address, store: alice.store)
        guard case .signal = second else { throw TestFailure("expected a SignalMessage after the reply") }
        var bytes = second.serialized
        bytes[bytes.count - 1] ^= 0x01  // inside the MAC
        let tampered = bytes
        #expect(throws: ProtocolError.badMAC) {
            try bob.store.transaction { store in
                try SessionCipher.decrypt(try SignalMessage(serialized: tampered), from: alice.address, store: store)
            }
        }
        #expect(try bob.store.loadSession(for: alice.address)?.serialized() == before)
    }

    @Test func concurrentTransactionsAreSerialised() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let store = device.store
        let conversation = try store.directConversation(with: "bob")
        let sender = ProtocolAddress(name: "bob", deviceId: 1)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in 0..<25 {
                _ = try? store.transaction { tx in
                    let id = UInt32(worker * 100 + i)
                    try tx.storePreKey(PreKeyRecord(id: id, keyPair: try PrivateKey.generate(using: SystemRandom.shared)))
                    _ = try tx.insertMessage(
                        NewMessage(conversation: conversation.id, sender: sender, outgoing: false, receivedAt: Int64(id), body: "m\(id)"))
                }
            }
        }
        #expect(try store.preKeyIds().count == 100)
        var total = 0
        var cursor: MessageCursor? = nil
        repeat {
            let page = try store.messages(in: conversation.id, before: cursor, limit: 30)
            total += page.messages.count
            cursor = page.next
        } while cursor != nil
        #expect(total == 100)
    }

    /// `DeviceStore` is `Sendable`: tasks share one store, and their operations do not interleave
    /// inside a transaction.
    @Test func tasksShareOneStore() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try TestDevice.create(name: "alice", in: dir, sealed: true).store
        let conversation = try store.groupConversation(groupId: "g")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for i in 0..<10 {
                        try store.transaction { tx in
                            let sender = ProtocolAddress(name: "member\(worker)", deviceId: 1)
                            let first = try tx.insertMessage(
                                NewMessage(conversation: conversation.id, sender: sender, outgoing: false, receivedAt: Int64(i), body: "w\(worker) \(i) a"))
                            let second = try tx.insertMessage(
                                NewMessage(conversation: conversation.id, sender: sender, outgoing: false, receivedAt: Int64(i), body: "w\(worker) \(i) b"))
                            // Nothing else was inserted between the two rows of this transaction.
                            #expect(second.id.rawValue == first.id.rawValue + 1)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try store.messages(in: conversation.id, limit: 100).messages.count == 80)
        #expect(try store.searchMessages("w3 b").count == 10)
    }
}
