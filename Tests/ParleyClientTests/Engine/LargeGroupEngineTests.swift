import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A 500-member group end to end: one device per member, every sender key distributed over
/// pairwise sessions set up from fresh bundles, one sender-key ciphertext fanned out by the
/// relay, every member decrypting it and answering with a delivery receipt.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct LargeGroupEngineTests {
    @Test func fiveHundredMembers() async throws {
        let harness = try await EngineHarness()
        let count = 500
        var devices: [ParleyDevice] = []
        for start in stride(from: 0, to: count, by: 25) {
            try await withThrowingTaskGroup(of: ParleyDevice.self) { group in
                for i in start..<min(start + 25, count) { group.addTask { try await harness.register("m\(i)") } }
                for try await device in group { devices.append(device) }
            }
        }
        let creator = devices[0]
        let members = devices.dropFirst().map(\.account.name)
        let groupId = try await creator.createGroup(title: "five hundred", members: members)
        #expect(try creator.store.groupMembers(groupId: groupId).count == count)
        let uid = try await creator.sendGroup("hello, all 500 of you", to: groupId)
        #expect(try creator.store.outboxCount() == 0)

        var received = 0
        for member in devices.dropFirst() {
            #expect(await member.syncOnce(timeout: .seconds(60)))
            let conversation = try member.store.groupConversation(groupId: groupId)
            let messages = try member.store.messages(in: conversation.id, limit: 10).messages
            if messages.contains(where: { $0.body == "hello, all 500 of you" && $0.messageUid == uid }) { received += 1 }
            #expect(conversation.title == "five hundred")
        }
        #expect(received == count - 1)

        // Every member's delivery receipt reaches the sender.
        #expect(await creator.syncOnce(timeout: .seconds(120)))
        let id = try #require(try creator.store.message(uid: uid, sender: creator.account.name))
        let statuses = try #require(try creator.store.message(id: id)).statuses
        #expect(statuses.count == count - 1)
        #expect(statuses.values.allSatisfy { $0 == .delivered })
        for device in devices { await device.close() }
        await harness.finish()
    }
}
