import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// The messaging engine end to end: real devices (own SQLite stores) through a real relay on
/// loopback, with the receive loops running as they do in the CLI.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineEndToEndTests {
    @Test func oneToOneWithDeliveryAndReadReceipts() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)
        let aliceLoop = Task { await alice.run() }, bobLoop = Task { await bob.run() }

        let uid = try await alice.send("hello bob", to: bob.account.name)
        await bobLog.wait(for: "bob receives") { $0.messageBody == "hello bob" }
        await aliceLog.wait(for: "delivered") { $0 == .status(messageUid: uid, recipient: bob.account.name, status: .delivered) }

        let conversation = try bob.store.directConversation(with: alice.account.name)
        #expect(try await bob.markRead(conversation.id) == 1)
        await aliceLog.wait(for: "read") { $0 == .status(messageUid: uid, recipient: bob.account.name, status: .read) }

        let reply = try await bob.send("hi alice", to: alice.account.name)
        await aliceLog.wait(for: "alice receives") { $0.messageBody == "hi alice" }
        await bobLog.wait(for: "reply delivered") { $0 == .status(messageUid: reply, recipient: alice.account.name, status: .delivered) }

        // Both histories hold both messages, each once, with the right direction and status.
        let aliceHistory = try alice.store.messages(in: try alice.store.directConversation(with: bob.account.name).id, limit: 10).messages
        #expect(aliceHistory.map(\.body) == ["hi alice", "hello bob"])
        #expect(aliceHistory.map(\.outgoing) == [false, true])
        #expect(aliceHistory[1].statuses[bob.account.name] == .read)
        let bobHistory = try bob.store.messages(in: conversation.id, limit: 10).messages
        #expect(bobHistory.map(\.body) == ["hi alice", "hello bob"])
        // The last receipts can reach their recipient before their sender has read the relay's
        // answer and cleared its outbox row: wait for both outboxes to drain (each must).
        #expect(await outboxDrains(alice), "alice's outbox still holds \((try? alice.store.outboxCount()) ?? -1) entries")
        #expect(await outboxDrains(bob), "bob's outbox still holds \((try? bob.store.outboxCount()) ?? -1) entries")

        aliceLoop.cancel(); bobLoop.cancel()
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func outboxSurvivesAnUnreachableRelay() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let bobLog = await EventLog(bob)
        // Sessions first, so the sends below need nothing but the relay.
        try await alice.send("first", to: bob.account.name)
        try await harness.stopRelay()

        let uid = try await alice.send("while the relay is down", to: bob.account.name)
        #expect(try alice.store.outboxCount() == 1)
        let id = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.message(id: id)?.statuses[bob.account.name] == .pending)

        try await harness.startRelay()
        await alice.flushOutbox()
        #expect(try alice.store.outboxCount() == 0)
        #expect(try alice.store.message(id: id)?.statuses[bob.account.name] == .sent)

        let bobLoop = Task { await bob.run() }
        await bobLog.wait(for: "bob receives the queued message") { $0.messageBody == "while the relay is down" }
        #expect(bobLog.count { $0.messageBody == "first" } == 1)
        bobLoop.cancel()
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func groupMessagesAndRemovalRotatesSenderKeys() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let bobLog = await EventLog(bob), carolLog = await EventLog(carol), aliceLog = await EventLog(alice)
        let loops = [Task { await alice.run() }, Task { await bob.run() }, Task { await carol.run() }]

        let groupId = try await alice.createGroup(title: "climbing", members: [bob.account.name, carol.account.name])
        let uid = try await alice.sendGroup("meet at 6", to: groupId)
        await bobLog.wait(for: "bob gets the group message") { $0.messageBody == "meet at 6" }
        await carolLog.wait(for: "carol gets the group message") { $0.messageBody == "meet at 6" }
        await aliceLog.wait(for: "delivered to carol") { $0 == .status(messageUid: uid, recipient: carol.account.name, status: .delivered) }
        #expect(try bob.store.groupConversation(groupId: groupId).title == "climbing")
        #expect(try bob.store.groupMembers(groupId: groupId).sorted() == [alice.account.name, bob.account.name, carol.account.name].sorted())

        try await bob.sendGroup("ok from bob", to: groupId)
        await aliceLog.wait(for: "alice gets bob's") { $0.messageBody == "ok from bob" }
        await carolLog.wait(for: "carol gets bob's") { $0.messageBody == "ok from bob" }

        let aliceName = SenderKeyName(groupId: groupId, sender: alice.account.address)
        let oldKey = try #require(try alice.store.loadSenderKey(for: aliceName)?.keyIds.first)
        try await alice.removeMembers([carol.account.name], from: groupId)
        try await alice.sendGroup("carol is out", to: groupId)
        await bobLog.wait(for: "bob gets the post-removal message") { $0.messageBody == "carol is out" }
        let newKey = try #require(try alice.store.loadSenderKey(for: aliceName)?.keyIds.first)
        #expect(newKey != oldKey)
        // Bob holds the new key; carol only ever got the old one, and the relay no longer sends
        // her the group's messages.
        #expect(try bob.store.loadSenderKey(for: aliceName)?.keyIds.contains(newKey) == true)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try carol.store.loadSenderKey(for: aliceName)?.keyIds.contains(newKey) != true)
        #expect(carolLog.count { $0.messageBody == "carol is out" } == 0)
        #expect(try !carol.store.groupMembers(groupId: groupId).contains(carol.account.name))

        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close(); await carol.close()
        await harness.finish()
    }

    @Test func brokenSessionIsRepairedAndTheMessageResent() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)
        let loops = [Task { await alice.run() }, Task { await bob.run() }]
        try await alice.send("one", to: bob.account.name)
        await bobLog.wait(for: "first") { $0.messageBody == "one" }
        let two = try await bob.send("two", to: alice.account.name)
        await aliceLog.wait(for: "reply") { $0.messageBody == "two" }
        await bobLog.wait(for: "receipt for the reply") { $0 == .status(messageUid: two, recipient: alice.account.name, status: .delivered) }

        // Bob loses his session with alice (a restored backup, a bug): her next message fails.
        try bob.store.deleteSession(for: alice.account.address)
        try await alice.send("three", to: bob.account.name)
        await bobLog.wait(for: "undecryptable recorded") {
            if case .undecryptable(let sender, _) = $0 { return sender == alice.account.address }
            return false
        }
        // Bob's report travels over a fresh session; alice resends over it.
        await bobLog.wait(for: "resent message decrypts") { $0.messageBody == "three" }
        let history = try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 10).messages
        #expect(history.filter { $0.body == "three" }.count == 1)
        // The resent message took the placeholder's place: nothing is left undecryptable.
        #expect(!history.contains { $0.couldNotDecrypt })
        // The conversation keeps working both ways.
        try await bob.send("four", to: alice.account.name)
        await aliceLog.wait(for: "after repair") { $0.messageBody == "four" }

        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func duplicateAndReorderedEnvelopesAreStoredOnceEach() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        for i in 1...5 { try await alice.send("m\(i)", to: bob.account.name) }

        // Take bob's envelopes off the relay without the engine, then feed them to it shuffled
        // and twice over.
        let raw = RelayConnection.connect(webSocketURL: "ws://127.0.0.1:\(harness.port)/v1/ws", credentials: bob.account.credentials)
        var envelopes: [Envelope] = []
        for await frame in raw.frames {
            if let envelope = frame.envelope { envelopes.append(envelope) }
            if frame.type == .queueEmpty { break }
        }
        await raw.close()
        #expect(envelopes.count == 5)
        let order = [2, 0, 4, 1, 3, 0, 4, 2]
        for index in order { #expect(await bob.process(envelopes[index])) }
        let history = try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 10).messages
        #expect(history.compactMap(\.body).sorted() == ["m1", "m2", "m3", "m4", "m5"])
        #expect(!history.contains { $0.couldNotDecrypt })
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
