import Foundation
import GRDB
import ParleyWire
import Testing
@testable import ParleyRelay

/// Group roles and versions: the creator is an admin, only admins add, remove and promote, anyone may
/// leave; every change increments the group's version, and a group send naming an old version is
/// refused without storing anything.
@Suite("Group roles", .timeLimit(.minutes(3)))
struct GroupRoleTests {
    @Test func onlyAdminsChangeMembersAndAnyoneMayLeave() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let carol = try await http.register(Fixtures.uniqueName("carol"))
        let dave = try await http.register(Fixtures.uniqueName("dave"))
        let group = try await http.call(.POST, "/v1/groups", alice, body: CreateGroupRequest(members: [bob.account, carol.account]))
            .decode(GroupInfo.self)
        #expect(group.admins == [alice.account])
        #expect(group.epoch == 1)
        let path = "/v1/groups/\(group.groupId.uuidString)"

        // A member who is not an admin can neither remove, nor add, nor promote: 403 notAdmin, nothing changes.
        let removal = try await http.call(.POST, path + "/members/remove", bob, body: GroupMembersRequest(members: [alice.account]))
        #expect(removal.status == 403)
        #expect(removal.error?.code == .notAdmin)
        let addition = try await http.call(.POST, path + "/members", bob, body: GroupMembersRequest(members: [dave.account]))
        #expect(addition.status == 403)
        #expect(addition.error?.code == .notAdmin)
        let promotion = try await http.call(.POST, path + "/admins", bob, body: GroupMembersRequest(members: [bob.account]))
        #expect(promotion.status == 403)
        #expect(promotion.error?.code == .notAdmin)
        let unchanged = try await http.call(.GET, path, alice).decode(GroupInfo.self)
        #expect(unchanged.members == [alice.account, bob.account, carol.account].sorted())
        #expect(unchanged.epoch == 1)

        // The admin promotes bob; bob may now add dave. Each change is one version.
        let promoted = try await http.call(.POST, path + "/admins", alice, body: GroupMembersRequest(members: [bob.account]))
        #expect(promoted.status == 200)
        #expect(try promoted.decode(GroupInfo.self).admins == [alice.account, bob.account].sorted())
        #expect(try promoted.decode(GroupInfo.self).epoch == 2)
        let added = try await http.call(.POST, path + "/members", bob, body: GroupMembersRequest(members: [dave.account]))
        #expect(added.status == 200)
        #expect(try added.decode(GroupInfo.self).epoch == 3)
        // Promoting a non-member is refused.
        let outsider = try await http.register(Fixtures.uniqueName("erin"))
        #expect(
            try await http.call(.POST, path + "/admins", alice, body: GroupMembersRequest(members: [outsider.account])).status == 400)

        // Carol (not an admin) leaves; nobody else can be removed by her.
        let left = try await http.call(.POST, path + "/members/remove", carol, body: GroupMembersRequest(members: [carol.account]))
        #expect(left.status == 200)
        #expect(try left.decode(GroupInfo.self).members == [alice.account, bob.account, dave.account].sorted())

        // Both admins leave: the longest-standing member (dave is the only one) becomes admin, and the
        // event says so.
        _ = try await http.call(.POST, path + "/members/remove", alice, body: GroupMembersRequest(members: [alice.account]))
        let last = try await http.call(.POST, path + "/members/remove", bob, body: GroupMembersRequest(members: [bob.account]))
        let after = try last.decode(GroupInfo.self)
        #expect(after.members == [dave.account])
        #expect(after.admins == [dave.account])
        let ws = try await relay.connect(dave)
        let events = try await ws.backlog().filter { $0.kind == .groupEvent }.map {
            try WireCoding.decoder().decode(GroupEvent.self, from: $0.content)
        }
        await ws.close()
        #expect(events.map(\.action) == [.membersAdded, .membersRemoved, .membersRemoved, .membersRemoved])
        #expect(events.compactMap(\.epoch) == [3, 4, 5, 6])
        let final = try #require(events.last)
        #expect(final.actor == bob.account)
        #expect(final.members == [bob.account])
        #expect(final.currentMembers == [dave.account])
        #expect(final.admins == [dave.account])
        #expect(final.promoted == [dave.account])
        #expect(events.first?.currentMembers == [alice.account, bob.account, carol.account, dave.account].sorted())
        try await relay.stop()
    }

    @Test func aGroupSendNamingAnOldVersionIsRefusedAndStoresNothing() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let carol = try await http.register(Fixtures.uniqueName("carol"))
        let group = try await http.call(.POST, "/v1/groups", alice, body: CreateGroupRequest(members: [bob.account]))
            .decode(GroupInfo.self)
        let path = "/v1/groups/\(group.groupId.uuidString)"
        _ = try await http.call(.POST, path + "/members", alice, body: GroupMembersRequest(members: [carol.account]))

        let stale = try await http.call(
            .PUT, path + "/messages", bob, body: SendGroupMessageRequest(type: 7, content: Fixtures.bytes(100), epoch: 1))
        #expect(stale.status == 409)
        #expect(stale.error?.code == .groupChanged)
        let current = try await http.call(
            .PUT, path + "/messages", bob, body: SendGroupMessageRequest(type: 7, content: Fixtures.bytes(120), epoch: 2))
        #expect(current.status == 200)

        // Carol got the events and the one accepted message, nothing of the refused one.
        let ws = try await relay.connect(carol)
        let backlog = try await ws.backlog()
        await ws.close()
        #expect(backlog.filter { $0.kind == .group }.map(\.content.count) == [120])
        try await relay.stop()
    }

    /// A relay-v4 database: each group's creator becomes its admin, or, when the creator left, its
    /// longest-standing member; every group starts at version 1. The roles migration runs after `relay-v4-hardening`.
    @Test func theMigrationGivesEveryExistingGroupAnAdmin() throws {
        let queue = try DatabaseQueue()
        let migrator = SQLiteSchema.migrator()
        let names = migrator.migrations
        #expect(names.firstIndex(of: "relay-v5-group-roles") == names.firstIndex(of: "relay-v4-hardening").map { $0 + 1 })
        #expect(names.firstIndex(of: "relay-v6-kyber-prekeys") == names.firstIndex(of: "relay-v5-group-roles").map { $0 + 1 })
        try migrator.migrate(queue, upTo: "relay-v4-hardening")
        let kept = UUID(), orphaned = UUID()
        try queue.write { db in
            for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
                try db.execute(sql: "INSERT INTO account (id, name, created_at) VALUES (?, ?, 0)", arguments: [id, name])
            }
            try db.execute(sql: "INSERT INTO chat_group (id, creator, created_at) VALUES (?, 'alice', 0)", arguments: [kept])
            try db.execute(sql: "INSERT INTO chat_group (id, creator, created_at) VALUES (?, 'alice', 0)", arguments: [orphaned])
            for (group, account, added) in [(kept, 1, 1), (kept, 2, 2), (orphaned, 3, 5), (orphaned, 2, 7)] {
                try db.execute(
                    sql: "INSERT INTO group_member (group_id, account_id, added_at) VALUES (?, ?, ?)", arguments: [group, account, added])
            }
        }
        try migrator.migrate(queue)
        try queue.read { db in
            let keptInfo = try SQLiteRelayStore.groupInfo(db, kept)
            #expect(keptInfo.admins == ["alice"])
            #expect(keptInfo.epoch == 1)
            let orphanedInfo = try SQLiteRelayStore.groupInfo(db, orphaned)
            #expect(orphanedInfo.members == ["bob", "carol"])
            #expect(orphanedInfo.admins == ["carol"])  // the creator is gone: the longest-standing member
        }
    }
}
