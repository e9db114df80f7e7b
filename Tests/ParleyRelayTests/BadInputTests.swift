import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Bad input", .timeLimit(.minutes(3)))
struct BadInputTests {
    @Test func malformedUnknownAndOversizedHTTPBodies() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        var reply = try await http.raw(.POST, "/v1/accounts", body: Data("{not json".utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .malformedRequest)

        reply = try await http.raw(.POST, "/v1/accounts", body: Data(#"{"name":"x1x"}"#.utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .malformedRequest)

        let keys = try WireCoding.encoder().encode(Fixtures.keys())
        let keysJSON = String(decoding: keys, as: UTF8.self)
        reply = try await http.raw(
            .POST, "/v1/accounts", body: Data(#"{"name":"carol-x","device":\#(keysJSON),"admin":true}"#.utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .unknownField)
        #expect(reply.error?.message.contains("admin") == true)

        // Nested unknown field.
        let nested = keysJSON.replacingOccurrences(of: #""registrationId""#, with: #""extra":1,"registrationId""#)
        reply = try await http.raw(.POST, "/v1/accounts", body: Data(#"{"name":"carol-y","device":\#(nested)}"#.utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .unknownField)

        // Oversized ciphertext.
        let bobDevices = try await http.devices(of: bob.account, alice)
        let big = OutgoingDeviceMessage(
            deviceId: 1, registrationId: bobDevices[0].registrationId, type: 1,
            content: Fixtures.bytes(RelayLimits.maxCiphertextBytes + 1))
        reply = try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: SendMessageRequest(messages: [big]))
        #expect(reply.status == 413)
        #expect(reply.error?.code == .payloadTooLarge)

        // Unknown recipient, unknown route.
        reply = try await http.sendToAll(from: alice, to: alice.account)
        #expect(reply.status == 400)  // alone: nothing to address
        reply = try await http.call(.PUT, "/v1/messages/nobody-abc", alice, body: SendMessageRequest(messages: []))
        #expect(reply.status == 404)
        reply = try await http.call(.GET, "/v1/nothing", alice)
        #expect(reply.status == 404)
        try await relay.stop()
    }

    @Test func badFramesGetErrorsThenDisconnect() async throws {
        var limits = RelayLimits()
        limits.maxBadFramesPerConnection = 3
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let ws = try await relay.connect(alice)
        _ = try await ws.backlog()

        ws.sendRaw("garbage")
        let first = try #require(await ws.next(.error))
        #expect(first.error?.code == .malformedRequest)

        ws.sendRaw(#"{"type":"ping","bogus":1}"#)
        #expect(try #require(await ws.next(.error)).error?.code == .unknownField)

        // A good frame in between is fine.
        try ws.send(ClientFrame(type: .ping))
        #expect(await ws.next(.pong) != nil)

        ws.sendRaw(#"{"type":"message"}"#)
        #expect(try #require(await ws.next(.error)).error?.code == .invalidField)
        #expect(await ws.waitClosed())
        await ws.close()

        // The relay is still fine.
        #expect(try await relay.http.call(.GET, "/healthz").status == 200)
        try await relay.stop()
    }

    @Test func oversizedFramesAreRefused() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let ws = try await relay.connect(alice)
        _ = try await ws.backlog()
        ws.sendRaw(String(repeating: "x", count: RelayLimits.maxClientFrameBytes + 1))
        #expect(try #require(await ws.next(.error)).error?.code == .payloadTooLarge)
        try ws.send(ClientFrame(type: .ping))
        #expect(await ws.next(.pong) != nil)
        // Beyond the WebSocket frame limit the connection is closed.
        ws.sendRaw(String(repeating: "y", count: RelayLimits.maxServerFrameBytes + 1))
        #expect(await ws.waitClosed())
        await ws.close()
        #expect(try await relay.http.call(.GET, "/healthz").status == 200)
        try await relay.stop()
    }

    @Test func registrationFloodIsRateLimited() async throws {
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 2
        limits.creationsPerSecondPerAddress = 0.01
        let relay = try await TestRelay.start(limits: limits)
        _ = try await relay.http.register(Fixtures.uniqueName("a"))
        _ = try await relay.http.register(Fixtures.uniqueName("b"))
        let third = try await relay.http.call(
            .POST, "/v1/accounts", body: RegisterAccountRequest(name: Fixtures.uniqueName("c"), device: Fixtures.keys()))
        #expect(third.status == 429)
        #expect(third.error?.code == .rateLimited)
        #expect(try await relay.http.call(.GET, "/healthz").status == 200)
        try await relay.stop()
    }

    @Test func metricsEndpoint() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"))
        #expect(try await relay.http.sendToAll(from: alice, to: bob.account).status == 200)
        let text = try await relay.metricsText()
        #expect(text.contains("parley_relay_messages_in_total 1"))
        #expect(text.contains("parley_relay_connections"))
        #expect(text.contains("parley_relay_send_seconds"))
        try await relay.stop()
    }
}
