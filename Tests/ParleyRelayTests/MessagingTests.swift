import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("1:1 messages: device-set checks, delivery, acks", .timeLimit(.minutes(3)))
struct MessagingTests {
    @Test func mismatchedAndStaleDevicesStoreNothing() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 100))
        let bob2 = try await http.link(from: bob, keys: Fixtures.keys(registrationId: 200))
        let content = Fixtures.bytes(64)

        // Only bob's device 1: missing device 2.
        var reply = try await http.call(
            .PUT, "/v1/messages/\(bob.account)", alice,
            body: SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content)]))
        #expect(reply.status == 409)
        #expect(reply.error?.code == .mismatchedDevices)
        #expect(reply.error?.missingDevices == [2])
        #expect(reply.error?.extraDevices == [])
        #expect(reply.error?.account == bob.account)

        // An extra device 3.
        reply = try await http.call(
            .PUT, "/v1/messages/\(bob.account)", alice,
            body: SendMessageRequest(messages: [
                OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content),
                OutgoingDeviceMessage(deviceId: 2, registrationId: 200, type: 1, content: content),
                OutgoingDeviceMessage(deviceId: 3, registrationId: 300, type: 1, content: content),
            ]))
        #expect(reply.status == 409)
        #expect(reply.error?.extraDevices == [3])
        #expect(reply.error?.missingDevices == [])

        // Stale registration id of device 2.
        reply = try await http.call(
            .PUT, "/v1/messages/\(bob.account)", alice,
            body: SendMessageRequest(messages: [
                OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content),
                OutgoingDeviceMessage(deviceId: 2, registrationId: 201, type: 1, content: content),
            ]))
        #expect(reply.status == 410)
        #expect(reply.error?.code == .staleDevices)
        #expect(reply.error?.staleDevices == [2])

        // The sender's own other devices must be covered too.
        let alice2 = try await http.link(from: alice, keys: Fixtures.keys(registrationId: 300))
        reply = try await http.call(
            .PUT, "/v1/messages/\(bob.account)", alice,
            body: SendMessageRequest(messages: [
                OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content),
                OutgoingDeviceMessage(deviceId: 2, registrationId: 200, type: 1, content: content),
            ]))
        #expect(reply.status == 409)
        #expect(reply.error?.account == alice.account)
        #expect(reply.error?.missingDevices == [alice2.deviceId])

        // Nothing was stored for anyone.
        for device in [bob, bob2, alice2] {
            let ws = try await relay.connect(device)
            #expect(try await ws.backlog().isEmpty)
            await ws.close()
        }

        // The relay keeps device lists between send batches: a removed device is refused at once afterwards,
        // and a send without it goes through.
        let ownCopy = [OutgoingDeviceMessage(deviceId: alice2.deviceId, registrationId: 300, type: 1, content: content)]
        let toBoth = SendMessageRequest(
            messages: [
                OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content),
                OutgoingDeviceMessage(deviceId: 2, registrationId: 200, type: 1, content: content),
            ], ownDeviceMessages: ownCopy)
        #expect(try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: toBoth).status == 200)
        #expect(try await http.call(.DELETE, "/v1/devices/2", bob).status == 204)
        reply = try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: toBoth)
        #expect(reply.status == 409)
        #expect(reply.error?.extraDevices == [2])
        let toOne = SendMessageRequest(
            messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content)],
            ownDeviceMessages: ownCopy)
        #expect(try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: toOne).status == 200)
        try await relay.stop()
    }

    @Test func sendDeliverLiveAckAndSyncCopies() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let alice2 = try await http.link(from: alice)
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        let bobWS = try await relay.connect(bob)
        #expect(try await bobWS.backlog().isEmpty)

        let content = Fixtures.bytes(300)
        let reply = try await http.sendToAll(from: alice, to: bob.account, content: content)
        #expect(reply.status == 200)
        let sent = try reply.decode(SendMessageResponse.self)
        #expect(sent.queued == 2)
        #expect(sent.ids.count == 2)

        let frame = try #require(await bobWS.next(.message))
        let envelope = try #require(frame.envelope)
        #expect(envelope.content == content)
        #expect(envelope.senderAccount == alice.account)
        #expect(envelope.senderDevice == 1)
        #expect(envelope.kind == .direct)
        #expect(envelope.conversation == Envelope.directConversation(alice.account, bob.account))
        #expect(envelope.serverTimestamp == sent.serverTimestamp)
        #expect(sent.ids.contains(envelope.id))
        try bobWS.ack([envelope.id])

        // alice's second device got the sync copy.
        let alice2WS = try await relay.connect(alice2)
        let syncCopies = try await alice2WS.backlog()
        #expect(syncCopies.map(\.content) == [content])
        await alice2WS.close()

        // Acked: gone after reconnect.
        try await Task.sleep(for: .milliseconds(200))
        await bobWS.close()
        let again = try await relay.connect(bob)
        #expect(try await again.backlog().isEmpty)
        await again.close()

        // Sending to your own account: all devices except the sending one.
        let own = try await http.sendToAll(from: alice, to: alice.account, content: content)
        #expect(own.status == 200)
        #expect(try own.decode(SendMessageResponse.self).queued == 1)
        try await relay.stop()
    }

    @Test func queueLimitRefusesLoudly() async throws {
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 3
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        for _ in 0..<3 {
            #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        }
        let full = try await http.sendToAll(from: alice, to: bob.account)
        #expect(full.status == 507)
        #expect(full.error?.code == .queueFull)
        #expect(full.error?.account == bob.account)

        // Acking frees room.
        let ws = try await relay.connect(bob)
        let backlog = try await ws.backlog()
        #expect(backlog.count == 3)
        try ws.ack(backlog.map(\.id))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        await ws.close()
        try await relay.stop()
    }
}
