import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// Adding a member, renaming, leaving: what every member's device ends up knowing.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EngineGroupManagementTests {
    @Test func addRenameAndLeave() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let groupId = try await alice.createGroup(title: "book club", members: [bob.account.name])
        try await alice.sendGroup("first book?", to: groupId)
        #expect(await bob.syncOnce())

        // Carol joins: she gets the membership, the title and the messages sent from then on.
        try await alice.addMembers([carol.account.name], to: groupId)
        try await alice.sendGroup("welcome carol", to: groupId)
        #expect(await carol.syncOnce())
        #expect(try carol.store.groupMembers(groupId: groupId).sorted() == [alice, bob, carol].map(\.account.name).sorted())
        let carolConversation = try carol.store.groupConversation(groupId: groupId)
        #expect(carolConversation.title == "book club")
        let carolHistory = try carol.store.messages(in: carolConversation.id, limit: 10).messages.reversed()
        #expect(carolHistory.filter { !$0.notice }.map(\.body) == ["welcome carol"])
        // The change reads as one sentence, once (the relay's event; the encrypted ADD only carries the title).
        #expect(carolHistory.filter(\.notice).map(\.body) == ["\(alice.account.name) added \(carol.account.name)"])

        // Bob renames it; the new title reaches the others end to end.
        #expect(await bob.syncOnce())
        try await bob.renameGroup(groupId, title: "reading circle")
        #expect(await alice.syncOnce())
        #expect(await carol.syncOnce())
        #expect(try alice.store.groupConversation(groupId: groupId).title == "reading circle")
        #expect(try carol.store.groupConversation(groupId: groupId).title == "reading circle")

        // Carol leaves: the others see it, and she can no longer post.
        try await carol.leaveGroup(groupId)
        #expect(await alice.syncOnce())
        #expect(try alice.store.groupMembers(groupId: groupId).sorted() == [alice, bob].map(\.account.name).sorted())
        await #expect(throws: ClientError.notAGroupMember(groupId)) { try await carol.sendGroup("still here?", to: groupId) }
        try await alice.sendGroup("after carol left", to: groupId)
        #expect(await bob.syncOnce())
        let bobMessages = try bob.store.messages(in: try bob.store.groupConversation(groupId: groupId).id, limit: 10).messages
        #expect(bobMessages.first?.body == "after carol left")
        let (a, b, c) = (alice.account.name, bob.account.name, carol.account.name)
        #expect(
            bobMessages.reversed().filter(\.notice).map(\.body) == [
                "\(a) created the group with \(b)", "\(a) added \(c)", "\(b) renamed the group to \u{201C}reading circle\u{201D}",
                "\(c) left",
            ])
        await alice.close(); await bob.close(); await carol.close()
        await harness.finish()
    }
}
