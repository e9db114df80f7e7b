import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("1:1 messages sent over the WebSocket (send / sendResult frames)", .timeLimit(.minutes(3)))
struct WebSocketSendTests {
    @Test func sendFrameIsCommittedDeliveredAndAnswered() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let alice2 = try await http.link(from: alice)
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 100))
        let aliceDevices = try await http.devices(of: alice.account, alice)
        let alice2Registration = try #require(aliceDevices.first { $0.deviceId == alice2.deviceId }).registrationId

        let bobWS = try await relay.connect(bob)
        #expect(try await bobWS.backlog().isEmpty)
        let aliceWS = try await relay.connect(alice)
        #expect(try await aliceWS.backlog().isEmpty)

        let content = Fixtures.bytes(200)
        let sync = Fixtures.bytes(50)
        try aliceWS.send(
            .send(
                requestId: 7, to: bob.account,
                SendMessageRequest(
                    messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content)],
                    ownDeviceMessages: [
                        OutgoingDeviceMessage(deviceId: alice2.deviceId, registrationId: alice2Registration, type: 1, content: sync)
                    ],
                    clientTimestamp: 1234)))
        let answer = try #require(await aliceWS.next(.sendResult))
        #expect(answer.requestId == 7)
        let result = try #require(answer.result)
        #expect(result.queued == 2)
        #expect(result.ids.count == 2)

        // Delivered live to the recipient, with the same id, and durably queued for the offline sync device.
        let frame = try #require(await bobWS.next(.message))
        let envelope = try #require(frame.envelope)
        #expect(envelope.id == result.ids[0])
        #expect(envelope.content == content)
        #expect(envelope.clientTimestamp == 1234)
        #expect(envelope.senderAccount == alice.account)
        #expect(envelope.senderDevice == 1)
        #expect(envelope.kind == .direct)
        #expect(envelope.conversation == Envelope.directConversation(alice.account, bob.account))

        // Acked: gone after a reconnect; the sync copy is in alice2's backlog.
        try bobWS.ack([envelope.id])
        #expect(await eventually { (try? await relay.running.core.store.totalQueued()) == 1 })
        await bobWS.close()
        let bobAgain = try await relay.connect(bob)
        #expect(try await bobAgain.backlog().isEmpty)
        let alice2WS = try await relay.connect(alice2)
        let syncCopies = try await alice2WS.backlog()
        #expect(syncCopies.map(\.id) == [result.ids[1]])
        #expect(syncCopies.first?.content == sync)

        await bobAgain.close()
        await alice2WS.close()
        await aliceWS.close()
        try await relay.stop()
    }

    @Test func refusedSendsAnswerWithTheRequestIdAndStoreNothing() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 100))
        let aliceWS = try await relay.connect(alice)
        #expect(try await aliceWS.backlog().isEmpty)
        let content = Fixtures.bytes(32)

        // Stale registration id: 410 semantics as an error frame carrying the request id.
        try aliceWS.send(
            .send(
                requestId: 1, to: bob.account,
                SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 101, type: 1, content: content)])))
        var frame = try #require(await aliceWS.next(.error))
        #expect(frame.requestId == 1)
        #expect(frame.error?.code == .staleDevices)
        #expect(frame.error?.staleDevices == [1])

        // Wrong device set: 409 semantics.
        try aliceWS.send(
            .send(
                requestId: 2, to: bob.account,
                SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 2, registrationId: 100, type: 1, content: content)])))
        frame = try #require(await aliceWS.next(.error))
        #expect(frame.requestId == 2)
        #expect(frame.error?.code == .mismatchedDevices)
        #expect(frame.error?.missingDevices == [1])
        #expect(frame.error?.extraDevices == [2])

        // Unknown account: 404 semantics.
        try aliceWS.send(
            .send(
                requestId: 3, to: "nobody-\(UUID().uuidString.prefix(6).lowercased())",
                SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: content)])))
        frame = try #require(await aliceWS.next(.error))
        #expect(frame.requestId == 3)
        #expect(frame.error?.code == .notFound)

        // Missing fields and unknown fields are refused like other bad frames.
        aliceWS.sendRaw(#"{"type":"send","requestId":4}"#)
        frame = try #require(await aliceWS.next(.error))
        #expect(frame.requestId == 4)
        #expect(frame.error?.code == .invalidField)
        aliceWS.sendRaw(#"{"type":"send","requestId":5,"to":"x","messages":[],"extra":1}"#)
        frame = try #require(await aliceWS.next(.error))
        #expect(frame.error?.code == .unknownField)

        #expect(try await relay.running.core.store.totalQueued() == 0)
        // The connection is still usable.
        try aliceWS.send(ClientFrame(type: .ping))
        #expect(await aliceWS.next(.pong) != nil)
        await aliceWS.close()
        try await relay.stop()
    }

    @Test func backlogThenLiveDeliveryKeepsEveryEnvelopeOnce() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 100))
        let aliceWS = try await relay.connect(alice)
        #expect(try await aliceWS.backlog().isEmpty)
        func send(_ id: Int64) throws {
            try aliceWS.send(
                .send(
                    requestId: id, to: bob.account,
                    SendMessageRequest(messages: [
                        OutgoingDeviceMessage(deviceId: 1, registrationId: 100, type: 1, content: Data("m\(id)".utf8))
                    ])))
        }
        // Five queued while bob is offline, then bob connects while five more are sent.
        for id in 1...5 { try send(Int64(id)) }
        for _ in 1...5 { #expect(await aliceWS.next(.sendResult) != nil) }
        let bobWS = try await relay.connect(bob)
        for id in 6...10 { try send(Int64(id)) }
        for _ in 6...10 { #expect(await aliceWS.next(.sendResult) != nil) }
        var contents: [String] = []
        while contents.count < 10, let frame = await bobWS.next(timeout: .seconds(20)) {
            if let envelope = frame.envelope { contents.append(String(decoding: envelope.content, as: UTF8.self)) }
        }
        #expect(contents.sorted() == (1...10).map { "m\($0)" }.sorted())
        #expect(Array(contents.prefix(5)) == (1...5).map { "m\($0)" })
        #expect(await bobWS.next(.message, timeout: .milliseconds(300)) == nil)
        await bobWS.close()
        await aliceWS.close()
        try await relay.stop()
    }
}
