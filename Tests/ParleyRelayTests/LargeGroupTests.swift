import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// A group at the size limit: 500 members, one ciphertext stored once and queued for all 499
/// other member devices, and a 501st member refused.
@Suite("500-member group", .timeLimit(.minutes(3)))
struct LargeGroupTests {
    @Test func fiveHundredMembers() async throws {
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 2_000
        limits.creationsPerSecondPerAddress = 1_000
        limits.requestBurstPerAddress = 100_000
        limits.requestsPerSecondPerAddress = 100_000
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let owner = try await http.register(Fixtures.uniqueName("owner"), keys: Fixtures.keys(oneTimeCount: 1))

        var members: [DeviceCredentials] = []
        for batch in 0..<10 {
            try await withThrowingTaskGroup(of: DeviceCredentials.self) { group in
                for i in 0..<(batch == 9 ? 49 : 50) {
                    group.addTask { try await http.register("m\(batch)x\(i)-\(UUID().uuidString.prefix(6).lowercased())", keys: Fixtures.keys(oneTimeCount: 1)) }
                }
                for try await credentials in group { members.append(credentials) }
            }
        }
        #expect(members.count == 499)

        let created = try await http.call(.POST, "/v1/groups", owner, body: CreateGroupRequest(members: members.map(\.account)))
        #expect(created.status == 201)
        let group = try created.decode(GroupInfo.self)
        #expect(group.members.count == 500)

        let extra = try await http.register(Fixtures.uniqueName("extra"), keys: Fixtures.keys(oneTimeCount: 1))
        let refused = try await http.call(
            .POST, "/v1/groups/\(group.groupId.uuidString)/members", owner, body: GroupMembersRequest(members: [extra.account]))
        #expect(refused.error?.code == .groupFull)

        let content = Fixtures.bytes(300)
        let sent = try await http.call(
            .PUT, "/v1/groups/\(group.groupId.uuidString)/messages", owner, body: SendGroupMessageRequest(type: 2, content: content))
        #expect(sent.status == 200)
        let receipt = try sent.decode(SendMessageResponse.self)
        #expect(receipt.queued == 499)
        #expect(receipt.ids.count == 1)

        // Every member device has the message queued (the creation event first).
        let store = relay.running.core.store
        for member in members {
            guard let auth = try await store.deviceAuth(account: member.account, deviceId: member.deviceId) else {
                Issue.record("no device for \(member.account)")
                continue
            }
            let queued = try await store.pending(DeviceAddress(accountId: auth.accountId, deviceId: 1), afterSeq: 0, limit: 10)
            #expect(queued.map(\.envelope.kind) == [.groupEvent, .group])
            #expect(queued.last?.envelope.content == content && queued.last?.envelope.id == receipt.ids.first)
        }
        // And a sample receives it over WebSocket.
        for member in members.prefix(5) {
            let ws = try await relay.connect(member)
            #expect(try await ws.backlog().last?.content == content)
            await ws.close()
        }
        try await relay.stop()
    }
}
