import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Durable queues: backlog order, reconnects, restarts, expiry", .timeLimit(.minutes(3)))
struct DurabilityTests {
    @Test func backlogInOrderAndReconnectMidBacklogLosesNothing() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        var contents: [Data] = []
        for index in 0..<50 {
            var content = Data("msg-\(index)-".utf8)
            content.append(Fixtures.bytes(32))
            contents.append(content)
            #expect(try await http.sendToAll(from: alice, to: bob.account, content: content).status == 200)
        }

        // Read 10 messages, ack only the first 5, then drop the connection mid-backlog.
        let first = try await relay.connect(bob)
        var firstTen: [Envelope] = []
        while firstTen.count < 10, let frame = await first.next(.message) {
            if let envelope = frame.envelope { firstTen.append(envelope) }
        }
        #expect(firstTen.map(\.content) == Array(contents[0..<10]))
        try first.ack(firstTen.prefix(5).map(\.id))
        try await Task.sleep(for: .milliseconds(300))
        await first.close()

        // Reconnect: the 45 unacked come again, in order, then queueEmpty.
        let second = try await relay.connect(bob)
        let rest = try await second.backlog()
        #expect(rest.map(\.content) == Array(contents[5...]))
        try second.ack(rest.map(\.id))
        try await Task.sleep(for: .milliseconds(300))
        await second.close()

        let third = try await relay.connect(bob)
        #expect(try await third.backlog().isEmpty)
        await third.close()
        try await relay.stop()
    }

    @Test func unackedMessagesSurviveRelayRestart() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"))
        // Contacts, so that alice may watch bob's presence below.
        try await relay.makeContacts(alice, bob)
        var contents: [Data] = []
        for _ in 0..<5 {
            let content = Fixtures.bytes(1000)
            contents.append(content)
            #expect(try await relay.http.sendToAll(from: alice, to: bob.account, content: content).status == 200)
        }
        // Delivered but not acked before the restart.
        let before = try await relay.connect(bob)
        #expect(try await before.backlog().count == 5)

        let restarted = try await relay.restarted()
        #expect(await before.waitClosed())
        await before.close()

        // Last-seen survives the restart (read from the database: bob has not reconnected yet).
        let watcher = try await restarted.connect(alice)
        _ = try await watcher.backlog()
        try watcher.send(ClientFrame(type: .subscribePresence, accounts: [bob.account]))
        let presence = try #require(await watcher.next(.presence))
        #expect(presence.online == false)
        #expect(presence.lastSeen != nil)
        await watcher.close()

        let after = try await restarted.connect(bob)
        #expect(try await after.backlog().map(\.content) == contents)
        await after.close()
        // Credentials and accounts survived too.
        #expect(try await restarted.http.call(.GET, "/v1/devices", alice).status == 200)
        try await restarted.stop()
    }

    @Test func retentionExpiryDeletesOldMessages() async throws {
        var limits = RelayLimits()
        limits.retentionSeconds = 0
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"))
        #expect(try await relay.http.sendToAll(from: alice, to: bob.account).status == 200)
        try await Task.sleep(for: .milliseconds(20))
        await ExpiryService(core: relay.running.core).sweep()
        let ws = try await relay.connect(bob)
        #expect(try await ws.backlog().isEmpty)
        await ws.close()
        #expect(try await relay.metricsText().contains("parley_relay_messages_expired_total 1"))
        try await relay.stop()
    }
}
