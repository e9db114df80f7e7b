import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A member that lost a sender key reports the group message it could not read; the sender hands
/// it the key again and resends the message, which the member then reads once.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EngineGroupRepairTests {
    @Test func lostSenderKeyIsRedistributedAndTheMessageResent() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)
        let loops = [Task { await alice.run() }, Task { await bob.run() }]
        let groupId = try await alice.createGroup(title: "repair", members: [bob.account.name])
        try await alice.sendGroup("before", to: groupId)
        await bobLog.wait(for: "first group message") { $0.messageBody == "before" }

        try bob.store.deleteSenderKeys(groupId: groupId)  // bob loses alice's sender key
        try await alice.sendGroup("after the loss", to: groupId)
        await bobLog.wait(for: "undecryptable group message") {
            // Sender keys are in libsignal's current layout: a distribution the member has no state for.
            if case .undecryptable(let sender, let reason) = $0 { return sender == alice.account.address && reason == "unknown_distribution" }
            return false
        }
        await bobLog.wait(for: "the resent message decrypts") { $0.messageBody == "after the loss" }
        let messages = try bob.store.messages(in: try bob.store.groupConversation(groupId: groupId).id, limit: 10).messages
        #expect(messages.filter { $0.body == "after the loss" }.count == 1)
        #expect(aliceLog.count { if case .sendFailed = $0 { return true } else { return false } } == 0)
        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
