import Foundation
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// The five ways group messages went wrong under membership churn (issue 13), each reproduced
/// with three or four accounts and no randomness: every device processes its queue when the test
/// says so (`syncOnce`), so each interleaving is fixed.
///
/// The rule they check: a group message the relay accepted reaches every device that was a
/// member when it was sent, exactly once, decryptable, in per-sender order, attributed to the
/// device that sent it, and no one else; a message that needed repair takes the place of its
/// placeholder.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct EngineGroupChurnTests {
    typealias Support = GroupTestSupport

    /// 1. Carol posts; alice removes carol before alice and bob process the post. Both must still
    /// read it (carol was a member when she sent it).
    @Test func aMessageSentBeforeTheSendersRemovalReachesEveryMemberAtSendTime() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let groupId = try await alice.createGroup(title: "churn", members: [bob.account.name])
        #expect(await bob.syncOnce())
        try await alice.addMembers([carol.account.name], to: groupId)
        #expect(await carol.syncOnce())
        try await carol.sendGroup("hello from carol", to: groupId)
        try await alice.removeMembers([carol.account.name], from: groupId)
        try await Support.settle([alice, bob, carol])

        for device in [alice, bob] {
            #expect(try Support.visible(device, group: groupId, among: ["hello from carol"]) == ["hello from carol"])
            let message = try #require(try Support.history(device, group: groupId).first { $0.body == "hello from carol" })
            #expect(message.sender == carol.account.address)
        }
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }

    /// 1b. Bob is removed and re-added before he processes anything: he gets what was sent while
    /// he was a member (before and after), and not what was sent while he was out.
    @Test func aRecipientRemovedAndReAddedGetsExactlyWhatWasSentWhileAMember() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let groupId = try await alice.createGroup(title: "churn", members: [bob.account.name, carol.account.name])
        try await Support.settle([alice, bob, carol])
        try await carol.sendGroup("m1 before", to: groupId)
        try await alice.removeMembers([bob.account.name], from: groupId)
        try await carol.sendGroup("m2 while bob is out", to: groupId)
        try await alice.addMembers([bob.account.name], to: groupId)
        try await carol.sendGroup("m3 after bob is back", to: groupId)
        try await Support.settle([alice, bob, carol])

        let all: Set = ["m1 before", "m2 while bob is out", "m3 after bob is back"]
        #expect(try Support.visible(bob, group: groupId, among: all) == ["m1 before", "m3 after bob is back"])
        #expect(try Support.visible(alice, group: groupId, among: all) == ["m1 before", "m2 while bob is out", "m3 after bob is back"])
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }

    /// 1c. The sender is removed before a repair finishes: bob could not decrypt carol's post,
    /// alice removes carol, and carol still answers bob's report (she was a member when she sent it).
    @Test func aRemovedSenderStillRepairsWhatItSentWhileAMember() async throws {
        let harness = try await EngineHarness()
        let group = try await Support.warmGroup(harness, title: "churn")
        let (alice, bob, carol, groupId) = (group.alice, group.bob, group.carol, group.groupId)
        try bob.store.deleteSenderKeys(groupId: groupId)  // bob loses carol's sender key
        try await carol.sendGroup("carol's last words", to: groupId)
        #expect(await bob.syncOnce())  // placeholder; the report goes to carol
        try await alice.removeMembers([carol.account.name], from: groupId)
        try await Support.settle([carol, bob, alice])

        let texts: Set = ["warm-up", "carol's last words"]
        #expect(try Support.visible(bob, group: groupId, among: texts) == ["warm-up", "carol's last words"])
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }

    /// 2. A repair must not reach an account added after the message was sent: dave joins while
    /// bob's report for an earlier post is in flight, and never reads that post.
    @Test func aRepairNeverReachesAMemberAddedAfterTheMessageWasSent() async throws {
        let harness = try await EngineHarness()
        let group = try await Support.warmGroup(harness, title: "churn")
        let (alice, bob, carol, groupId) = (group.alice, group.bob, group.carol, group.groupId)
        let dave = try await harness.register("dave")
        try bob.store.deleteSenderKeys(groupId: groupId)
        try await carol.sendGroup("said before dave joined", to: groupId)
        try await alice.addMembers([dave.account.name], to: groupId)
        try await Support.settle([alice, bob, carol, dave])

        let texts: Set = ["warm-up", "said before dave joined"]
        #expect(try Support.visible(bob, group: groupId, among: texts) == ["warm-up", "said before dave joined"])
        #expect(try Support.visible(dave, group: groupId, among: texts) == [])
        #expect(try dave.store.searchMessages("dave joined").isEmpty)
        for device in [alice, bob, carol, dave] { await device.close() }
        await harness.finish()
    }

    /// 3. A message that arrives through repair takes its placeholder's place: it is shown before
    /// what its sender sent later.
    @Test func aRepairedMessageKeepsItsPlaceBeforeLaterMessagesOfItsSender() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let groupId = try await alice.createGroup(title: "order", members: [bob.account.name, carol.account.name])
        try await alice.sendGroup("warm-up", to: groupId)
        try await Support.settle([alice, bob, carol])
        try bob.store.deleteSenderKeys(groupId: groupId)
        try await alice.sendGroup("one", to: groupId)
        try await alice.removeMembers([carol.account.name], from: groupId)  // rotates alice's key
        try await alice.sendGroup("two", to: groupId)  // under the new key, which bob gets
        try await Support.settle([bob, alice, carol])

        #expect(try Support.visible(bob, group: groupId, among: ["warm-up", "one", "two"]) == ["warm-up", "one", "two"])
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }

    /// 4. Only the device that sent a message answers a report about it, and the repaired message
    /// stays attributed to that device (not to another device of the same account).
    @Test func onlyTheSendingDeviceAnswersAndTheMessageKeepsItsSender() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Support.link(phone, harness: harness, name: "laptop")
        let groupId = try await phone.createGroup(title: "devices", members: [bob.account.name])
        try await phone.sendGroup("warm-up", to: groupId)
        try await Support.settle([phone, laptop, bob])
        try bob.store.deleteSenderKeys(groupId: groupId)
        try await phone.sendGroup("from the phone", to: groupId)
        try await Support.settle([bob, laptop, phone])  // the laptop sees bob's report first

        let texts: Set = ["warm-up", "from the phone"]
        #expect(try Support.visible(bob, group: groupId, among: texts) == ["warm-up", "from the phone"])
        let received = try Support.history(bob, group: groupId).filter { $0.body == "from the phone" }
        #expect(received.map(\.sender) == [phone.account.address])
        #expect(try Support.visible(laptop, group: groupId, among: texts) == ["warm-up", "from the phone"])
        for device in [phone, laptop, bob] { await device.close() }
        await harness.finish()
    }

    /// 4b. Own-device sync: a linked device that cannot decrypt what another device of its own
    /// account posted asks that device, and gets it.
    @Test func aLinkedDeviceGetsItsOwnAccountsPostRepaired() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Support.link(phone, harness: harness, name: "laptop")
        let groupId = try await phone.createGroup(title: "devices", members: [bob.account.name])
        try await phone.sendGroup("warm-up", to: groupId)
        try await Support.settle([phone, laptop, bob])
        try laptop.store.deleteSenderKeys(groupId: groupId)
        try await phone.sendGroup("posted on the phone", to: groupId)
        try await Support.settle([laptop, phone, bob])

        let texts: Set = ["warm-up", "posted on the phone"]
        #expect(try Support.visible(laptop, group: groupId, among: texts) == ["warm-up", "posted on the phone"])
        let copy = try #require(try Support.history(laptop, group: groupId).first { $0.body == "posted on the phone" })
        #expect(copy.outgoing)
        #expect(copy.sender == phone.account.address)
        for device in [phone, laptop, bob] { await device.close() }
        await harness.finish()
    }

    /// 5. Group notices are repaired like messages: a rename bob could not decrypt reaches him.
    @Test func aGroupNoticeThatDidNotDecryptIsRepaired() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let groupId = try await alice.createGroup(title: "before", members: [bob.account.name])
        try await alice.sendGroup("warm-up", to: groupId)
        try await Support.settle([alice, bob])
        try bob.store.deleteSenderKeys(groupId: groupId)
        try await alice.renameGroup(groupId, title: "after")
        try await Support.settle([bob, alice])

        #expect(try bob.store.groupConversation(groupId: groupId).title == "after")
        #expect(try !Support.history(bob, group: groupId).contains { $0.couldNotDecrypt })
        for device in [alice, bob] { await device.close() }
        await harness.finish()
    }

    /// A member who leaves still reads, without a repair, what was sent while it was a member and
    /// is still queued for it: leaving does not throw away the other members' sender keys.
    @Test func aMemberWhoLeavesReadsWhatWasQueuedBeforeWithoutRepair() async throws {
        let harness = try await EngineHarness()
        let group = try await Support.warmGroup(harness, title: "leaving")
        let (alice, bob, carol, groupId) = (group.alice, group.bob, group.carol, group.groupId)
        try await carol.sendGroup("before bob left", to: groupId)
        try await bob.leaveGroup(groupId)
        let bobLog = await EventLog(bob)
        try await Support.settle([bob, carol, alice])

        #expect(bobLog.count { if case .undecryptable = $0 { return true } else { return false } } == 0)
        #expect(try Support.visible(bob, group: groupId, among: ["warm-up", "before bob left"]) == ["warm-up", "before bob left"])
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }

    /// A sender whose view jumps over versions it never saw (a member removed and added back
    /// meanwhile, who may have lost the keys) starts a new sender key, so the member reads its next
    /// message without a repair.
    @Test func aSenderThatSkippedVersionsRotatesItsKey() async throws {
        let harness = try await EngineHarness()
        let group = try await Support.warmGroup(harness, title: "gap")
        let (alice, bob, carol, groupId) = (group.alice, group.bob, group.carol, group.groupId)
        // Carol is offline while alice removes bob and adds him back; bob has forgotten the keys
        // (out of the group longer than they are kept).
        try await alice.removeMembers([bob.account.name], from: groupId)
        try await alice.addMembers([bob.account.name], to: groupId)
        try await Support.settle([alice, bob])
        try bob.store.deleteSenderKeys(groupId: groupId)
        let bobLog = await EventLog(bob)
        try await carol.sendGroup("after the gap", to: groupId)  // planned for version 1, the relay is at 3
        try await Support.settle([bob, carol, alice])

        #expect(bobLog.count { if case .undecryptable = $0 { return true } else { return false } } == 0)
        #expect(try Support.visible(bob, group: groupId, among: ["after the gap"]) == ["after the gap"])
        for device in [alice, bob, carol] { await device.close() }
        await harness.finish()
    }
}
