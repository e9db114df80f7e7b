import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, item 12 (and 11's `ownDeviceMessages`): what a non-contact may see. Device names and times only
/// to the own account; typing and presence only between contacts (1:1 messages routed both ways, or a shared
/// group). Sends: `ownDeviceMessages` may be omitted over HTTP as over the WebSocket.
@Suite("Metadata visibility", .timeLimit(.minutes(3)))
struct MetadataTests {
    static func message(to devices: [DeviceInfo]) -> SendMessageRequest {
        SendMessageRequest(messages: devices.map {
            OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: Fixtures.bytes(20))
        })
    }

    @Test func deviceDetailsOnlyForTheOwnAccount() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        var keys = Fixtures.keys(registrationId: 77)
        keys.name = "alice's phone"
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: keys)
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let ws = try await relay.connect(alice)  // sets last-seen
        _ = try await ws.backlog()
        await ws.close()

        let own = try await http.devices(of: alice.account, alice)
        #expect(own.first?.name == "alice's phone")
        #expect(own.first?.createdAt != nil)
        #expect(try await eventually { try await http.devices(of: alice.account, alice).first?.lastSeen != nil })
        let mine = try await http.call(.GET, "/v1/devices", alice).decode(DeviceListResponse.self).devices
        #expect(mine.first?.name == "alice's phone")

        let seen = try await http.devices(of: alice.account, bob)
        #expect(seen.map(\.deviceId) == [1])
        #expect(seen.first?.registrationId == 77)
        #expect(seen.first?.name == nil)
        #expect(seen.first?.createdAt == nil)
        #expect(seen.first?.lastSeen == nil)
        let raw = try await http.call(.GET, "/v1/accounts/\(alice.account)/devices", bob)
        #expect(!String(decoding: raw.body, as: UTF8.self).contains("phone"))
        try await relay.stop()
    }

    @Test func typingAndPresenceOnlyBetweenContacts() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let bobWS = try await relay.connect(bob)
        _ = try await bobWS.backlog()
        let aliceWS = try await relay.connect(alice)
        _ = try await aliceWS.backlog()

        // Strangers: no presence, no typing; each asker is told, and nothing reaches the other.
        try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
        let refused = try #require(await bobWS.next())
        #expect(refused.type == .error)
        #expect(refused.error?.code == .forbidden)
        #expect(refused.error?.message.contains(alice.account) == true)
        try aliceWS.send(ClientFrame(type: .typing, to: bob.account, started: true))
        let typingRefused = try #require(await aliceWS.next())
        #expect(typingRefused.type == .error)
        #expect(typingRefused.error?.code == .forbidden)
        try bobWS.send(ClientFrame(type: .ping))
        #expect(await bobWS.next()?.type == .pong)  // not a typing frame first

        // One direction is not enough: alice wrote to bob, bob has not answered.
        #expect(try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: Self.message(to: try await http.devices(of: bob.account, alice))).status == 200)
        _ = await bobWS.next(.message)
        try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
        #expect(await bobWS.next()?.error?.code == .forbidden)

        // Both directions: contacts.
        #expect(try await http.call(.PUT, "/v1/messages/\(alice.account)", bob, body: Self.message(to: try await http.devices(of: alice.account, bob))).status == 200)
        _ = await aliceWS.next(.message)
        try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
        let presence = try #require(await bobWS.next())
        #expect(presence.type == .presence)
        #expect(presence.account == alice.account)
        #expect(presence.online == true)
        try aliceWS.send(ClientFrame(type: .typing, to: bob.account, started: true))
        let typing = try #require(await bobWS.next(.typing))
        #expect(typing.account == alice.account)

        // The refusals were policy answers, not bad frames: the connections are still open.
        try aliceWS.send(ClientFrame(type: .ping))
        #expect(await aliceWS.next(.pong) != nil)
        await aliceWS.close()
        await bobWS.close()
        try await relay.stop()
    }

    @Test func groupMembersAreContacts() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let carol = try await http.register(Fixtures.uniqueName("carol"))
        let dave = try await http.register(Fixtures.uniqueName("dave"))
        let erin = try await http.register(Fixtures.uniqueName("erin"))
        let created = try await http.call(.POST, "/v1/groups", carol, body: CreateGroupRequest(members: [dave.account]))
        #expect(created.status == 201)
        let daveWS = try await relay.connect(dave)
        _ = try await daveWS.backlog()
        try daveWS.send(ClientFrame(type: .subscribePresence, accounts: [carol.account, erin.account]))
        let carolState = try #require(await daveWS.next(.presence))
        #expect(carolState.account == carol.account)
        let refused = try #require(await daveWS.next(.error))
        #expect(refused.error?.code == .forbidden)
        #expect(refused.error?.message.contains(erin.account) == true)
        #expect(refused.error?.message.contains(carol.account) == false)
        await daveWS.close()
        try await relay.stop()
    }

    @Test func ownDeviceMessagesMayBeOmittedOverHTTPAndWebSocketAlike() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let registrationId = try await http.devices(of: bob.account, alice)[0].registrationId
        let body = #"{"messages":[{"deviceId":1,"registrationId":\#(registrationId),"type":1,"content":"AAEC"}]}"#
        var reply = try await http.raw(.PUT, "/v1/messages/\(bob.account)", body: Data(body.utf8), authorization: alice.authorizationHeader)
        #expect(reply.status == 200)

        // With another own device, leaving the sync copies out is a device mismatch of the sender's account,
        // over HTTP and over the WebSocket.
        let laptop = try await http.link(from: alice)
        reply = try await http.raw(.PUT, "/v1/messages/\(bob.account)", body: Data(body.utf8), authorization: alice.authorizationHeader)
        #expect(reply.status == 409)
        #expect(reply.error?.code == .mismatchedDevices)
        #expect(reply.error?.account == alice.account)
        #expect(reply.error?.missingDevices == [laptop.deviceId])
        let ws = try await relay.connect(alice)
        _ = try await ws.backlog()
        ws.sendRaw(#"{"type":"send","requestId":5,"to":"\#(bob.account)","messages":[{"deviceId":1,"registrationId":\#(registrationId),"type":1,"content":"AAEC"}]}"#)
        let answer = try #require(await ws.next(.error))
        #expect(answer.requestId == 5)
        #expect(answer.error?.code == .mismatchedDevices)
        #expect(answer.error?.account == alice.account)
        await ws.close()
        try await relay.stop()
    }
}
