import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Groups", .timeLimit(.minutes(3)))
struct GroupTests {
    @Test func fanOutMembershipEventsAndPermissions() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let alice2 = try await http.link(from: alice)
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let carol = try await http.register(Fixtures.uniqueName("carol"))
        let dave = try await http.register(Fixtures.uniqueName("dave"))

        let created = try await http.call(.POST, "/v1/groups", alice, body: CreateGroupRequest(members: [bob.account, carol.account]))
        #expect(created.status == 201)
        let group = try created.decode(GroupInfo.self)
        #expect(group.members == [alice.account, bob.account, carol.account].sorted())

        // Everyone (every device) got the "created" event.
        for device in [alice, alice2, bob, carol] {
            let ws = try await relay.connect(device)
            let backlog = try await ws.backlog()
            #expect(backlog.count == 1)
            let envelope = try #require(backlog.first)
            #expect(envelope.kind == .groupEvent)
            let event = try WireCoding.decoder().decode(GroupEvent.self, from: envelope.content)
            #expect(event.action == .created)
            #expect(event.groupId == group.groupId)
            try ws.ack([envelope.id])
            try await Task.sleep(for: .milliseconds(100))
            await ws.close()
        }

        // One ciphertext, stored once, fanned out to all member devices except the sending one.
        let content = Fixtures.bytes(500)
        let sent = try await http.call(
            .PUT, "/v1/groups/\(group.groupId.uuidString)/messages", alice, body: SendGroupMessageRequest(type: 2, content: content))
        #expect(sent.status == 200)
        let receipt = try sent.decode(SendMessageResponse.self)
        #expect(receipt.queued == 3)
        #expect(receipt.ids.count == 1)
        for device in [alice2, bob, carol] {
            let ws = try await relay.connect(device)
            let backlog = try await ws.backlog()
            #expect(backlog.map(\.content) == [content])
            #expect(backlog.first?.id == receipt.ids.first)
            #expect(backlog.first?.groupId == group.groupId)
            #expect(backlog.first?.conversation == Envelope.groupConversation(group.groupId))
            await ws.close()
        }
        let sender = try await relay.connect(alice)
        #expect(try await sender.backlog().isEmpty)
        await sender.close()

        // Non-members can neither post nor read nor change membership.
        let foreign = try await http.call(
            .PUT, "/v1/groups/\(group.groupId.uuidString)/messages", dave, body: SendGroupMessageRequest(type: 2, content: content))
        #expect(foreign.status == 403)
        #expect(foreign.error?.code == .forbidden)
        #expect(try await http.call(.GET, "/v1/groups/\(group.groupId.uuidString)", dave).status == 403)
        #expect(
            try await http.call(
                .POST, "/v1/groups/\(group.groupId.uuidString)/members", dave, body: GroupMembersRequest(members: [dave.account])
            ).status == 403)

        // Alice (the creator, an admin) removes carol: members (and carol) get the event; carol then cannot post.
        let removed = try await http.call(
            .POST, "/v1/groups/\(group.groupId.uuidString)/members/remove", alice, body: GroupMembersRequest(members: [carol.account]))
        #expect(removed.status == 200)
        #expect(try removed.decode(GroupInfo.self).members == [alice.account, bob.account].sorted())
        let carolWS = try await relay.connect(carol)
        let carolBacklog = try await carolWS.backlog()
        let lastEvent = try #require(carolBacklog.last)
        #expect(lastEvent.kind == .groupEvent)
        #expect(try WireCoding.decoder().decode(GroupEvent.self, from: lastEvent.content).action == .membersRemoved)
        await carolWS.close()
        #expect(
            try await http.call(
                .PUT, "/v1/groups/\(group.groupId.uuidString)/messages", carol, body: SendGroupMessageRequest(type: 2, content: content)
            ).status == 403)

        // Group typing reaches connected members only, not non-members.
        let bobLive = try await relay.connect(bob)
        _ = try await bobLive.backlog()
        let aliceLive = try await relay.connect(alice)
        _ = try await aliceLive.backlog()
        try aliceLive.send(ClientFrame(type: .typing, groupId: group.groupId, started: true))
        let typing = try #require(await bobLive.next(.typing))
        #expect(typing.groupId == group.groupId)
        #expect(typing.account == alice.account)
        let daveLive = try await relay.connect(dave)
        _ = try await daveLive.backlog()
        try daveLive.send(ClientFrame(type: .typing, groupId: group.groupId, started: true))
        #expect(try #require(await daveLive.next(.error)).error?.code == .forbidden)
        await daveLive.close()
        await aliceLive.close()
        await bobLive.close()

        // Add dave; list groups.
        let added = try await http.call(
            .POST, "/v1/groups/\(group.groupId.uuidString)/members", alice, body: GroupMembersRequest(members: [dave.account]))
        #expect(added.status == 200)
        let daveGroups = try await http.call(.GET, "/v1/groups", dave).decode(GroupListResponse.self)
        #expect(daveGroups.groups.map(\.groupId) == [group.groupId])
        try await relay.stop()
    }

    @Test func memberLimit() async throws {
        var limits = RelayLimits()
        limits.maxGroupMembers = 2
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let carol = try await http.register(Fixtures.uniqueName("carol"))
        let full = try await http.call(.POST, "/v1/groups", alice, body: CreateGroupRequest(members: [bob.account, carol.account]))
        #expect(full.status == 409)
        #expect(full.error?.code == .groupFull)
        try await relay.stop()
    }
}
