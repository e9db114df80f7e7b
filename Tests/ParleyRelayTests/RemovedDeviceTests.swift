import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// A removed device must lose the relay at once (issue 9, item 1): a ticket issued before the removal does not
/// upgrade after it, every session of the device ends at once whatever its outbox holds, nothing it sends after
/// the removal is stored, and its frames do not keep its session alive.
@Suite("A removed device", .timeLimit(.minutes(4)))
struct RemovedDeviceTests {
    /// A `send` from alice's second device to bob (device 1, registration id 901), with the sync copy for
    /// alice's first device (registration id 900).
    static func sendFrame(_ requestId: Int64, to bob: String) -> ClientFrame {
        .send(
            requestId: requestId, to: bob,
            SendMessageRequest(
                messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 901, type: 1, content: Fixtures.bytes(100))],
                ownDeviceMessages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 900, type: 1, content: Fixtures.bytes(100))]))
    }

    @Test func aTicketIssuedBeforeTheRemovalNoLongerUpgrades() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let second = try await http.link(from: alice)
        let ticket = try await http.call(.POST, "/v1/ws/tickets", second).decode(WebSocketTicketResponse.self).ticket
        #expect(try await http.call(.DELETE, "/v1/devices/\(second.deviceId)", alice).status == 204)

        let late = try RawWebSocket(port: relay.port, authorization: nil, query: "?ticket=\(ticket)")
        #expect(try await late.handshakeStatus().hasPrefix("HTTP/1.1 401"))
        #expect(await relay.running.core.hub.connectedDevices(of: alice.account) == 0)
        try await relay.stop()
    }

    @Test func removalEndsAStalledSessionAtOnceAndNothingItSendsAfterwardsIsStored() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Fixtures.keys(registrationId: 900))
        let second = try await http.link(from: alice)
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 901))

        // While alice's second device is offline, bob sends alice's devices more than the sockets hold; then it
        // connects and does not read: its session has a backlog of unsent frames. (Removed right away, well before
        // a ping could have gone unanswered: the close below is the removal's.)
        for _ in 0..<20 {
            #expect(try await http.sendToAll(from: bob, to: alice.account, content: Fixtures.bytes(RelayLimits.maxCiphertextBytes)).status == 200)
        }
        let stalled = try RawWebSocket(port: relay.port, authorization: second.authorizationHeader)
        try await stalled.handshake()
        #expect(await eventually(timeout: .seconds(10)) { await relay.running.core.hub.connectedDevices(of: alice.account) == 1 })

        #expect(try await http.call(.DELETE, "/v1/devices/\(second.deviceId)", alice).status == 204)

        // After the removal was answered, the removed device goes on sending (and still does not read): the relay
        // must have closed its connection at once, and store none of it.
        var requestId: Int64 = 0
        var closed = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !closed, ContinuousClock.now < deadline {
            requestId += 1
            closed = try stalled.write(Self.sendFrame(requestId, to: bob.account)) == .closed || stalled.closedByPeer
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(closed, "the removed device's session was still open \(requestId) frames after its removal")
        #expect(await eventually(timeout: .seconds(10)) { await relay.running.core.hub.connectedDevices(of: alice.account) == 0 })

        let bobWS = try await relay.connect(bob)
        #expect(try await bobWS.backlog().isEmpty, "a send of the removed device was stored")
        await bobWS.close()
        try await relay.stop()
    }

    @Test func aDeviceThatDoesNotAnswerPingsIsClosedWhateverElseItSends() async throws {
        // Default limits: the relay pings every 30 s and closes a connection whose pong has not come by the next.
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let mute = try RawWebSocket(port: relay.port, authorization: alice.authorizationHeader)
        try await mute.handshake()
        // It never reads, so it never sees a ping, but it sends a frame (JSON `ping`) every second.
        let interval = relay.limits.pingIntervalSeconds
        var closed = false
        let deadline = ContinuousClock.now + .seconds(interval * 3 + 20)
        while !closed, ContinuousClock.now < deadline {
            closed = try mute.write(ClientFrame(type: .ping)) == .closed || mute.closedByPeer
            try await Task.sleep(for: .seconds(1))
        }
        #expect(closed, "frames kept a connection alive that never answered a ping")
        try await relay.stop()
    }
}
