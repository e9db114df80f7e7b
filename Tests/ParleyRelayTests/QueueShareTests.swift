import Foundation
import GRDB
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, item 7: every path that queues counts against a device's queue cap (group events too), and one
/// sender account gets at most its share of a device's queue, so it cannot make the device unreachable for
/// everyone else.
@Suite("Queue caps and per-sender shares", .timeLimit(.minutes(5)))
struct QueueShareTests {
    /// `count` 1:1 sends from `sender` to `recipient`, several at a time; waits and retries on 429 (other suites
    /// share the loopback address's request budget).
    static func send(_ count: Int, from sender: DeviceCredentials, to recipient: String, http: HTTPTestClient) async throws -> [Int] {
        let devices = try await http.devices(of: recipient, sender)
        let body = SendMessageRequest(messages: devices.map {
            OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: Fixtures.bytes(16))
        })
        return try await withThrowingTaskGroup(of: Int.self) { group in
            var next = 0
            var statuses: [Int] = []
            func add() {
                next += 1
                group.addTask {
                    while true {
                        let reply = try await http.call(.PUT, "/v1/messages/\(recipient)", sender, body: body)
                        if reply.status != 429 { return reply.status }
                        try await Task.sleep(for: .seconds(1))
                    }
                }
            }
            while next < min(16, count) { add() }
            while let status = try await group.next() {
                statuses.append(status)
                if next < count { add() }
            }
            return statuses
        }
    }

    /// Queues `count` 1:1 messages from `sender` to `recipient`'s device 1 through the store, in one transaction
    /// (the same validation and caps as a send; setting up a full queue over HTTP would take thousands of
    /// requests). Returns how many were stored.
    static func fill(_ relay: TestRelay, _ count: Int, from sender: DeviceCredentials, to recipient: DeviceCredentials) async throws -> Int {
        let store = relay.running.core.store
        let auth = try #require(try await store.deviceAuth(account: sender.account, deviceId: sender.deviceId))
        let device = AuthenticatedDevice(accountId: auth.accountId, account: sender.account, deviceId: sender.deviceId)
        let registrationId = try await store.devices(account: recipient.account)[0].registrationId
        let now = RelayClock.nowMillis()
        let submissions = (0..<count).map { _ in
            MessageSubmission(
                sender: device,
                payload: .direct(
                    recipient: recipient.account,
                    messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: registrationId, type: 1, content: Fixtures.bytes(16))],
                    own: []),
                clientTimestamp: nil, serverTimestamp: now, expiresAt: relay.running.core.expiry(from: now))
        }
        let results = try await store.commit(submissions, limits: relay.limits)
        return results.filter { if case .success = $0 { true } else { false } }.count
    }

    static func queueCount(_ relay: TestRelay, _ credentials: DeviceCredentials) async throws -> Int {
        let auth = try #require(try await relay.running.core.store.deviceAuth(account: credentials.account, deviceId: credentials.deviceId))
        // Through the store protocol: the same on SQLite and PostgreSQL.
        let address = DeviceAddress(accountId: auth.accountId, deviceId: credentials.deviceId)
        return try await relay.running.core.store.pending(address, afterSeq: 0, limit: 1_000_000).count
    }

    /// The case: a victim's queue at its cap (300 here, as in the report) takes no group event either.
    @Test func groupEventsRespectTheQueueCap() async throws {
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 300
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let victim = try await http.register(Fixtures.uniqueName("victim"))
        let friend = try await http.register(Fixtures.uniqueName("friend"))
        let attacker = try await http.register(Fixtures.uniqueName("attacker"))
        #expect(try await Self.fill(relay, 300, from: friend, to: victim) == 300)
        #expect(try await Self.queueCount(relay, victim) == 300)
        // One more message over HTTP is refused, and so (the fix) is any group event.
        #expect(try await Self.send(1, from: friend, to: victim.account, http: http) == [507])

        for _ in 0..<5 {
            let created = try await http.call(.POST, "/v1/groups", attacker, body: CreateGroupRequest(members: [victim.account]))
            #expect(created.status == 507)
            #expect(created.error?.code == .queueFull)
            #expect(created.error?.account == victim.account)
        }
        #expect(try await Self.queueCount(relay, victim) == 300)
        // Nothing of the refused creations was stored.
        #expect(try await http.call(.GET, "/v1/groups", attacker).decode(GroupListResponse.self).groups.isEmpty)
        try await relay.stop()
    }

    /// At the default limits, one sender account fills at most its share (2,500 of 10,000) of a device's queue;
    /// then it gets 507 while others still reach the device, and its group events (group creations including
    /// the device) count against the same share.
    @Test func oneSenderCannotFillAQueueForEveryone() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let share = relay.limits.maxQueuedMessagesPerSender
        let victim = try await http.register(Fixtures.uniqueName("victim"))
        let attacker = try await http.register(Fixtures.uniqueName("attacker"))
        let friend = try await http.register(Fixtures.uniqueName("friend"))

        #expect(try await Self.fill(relay, share - 4, from: attacker, to: victim) == share - 4)
        #expect(try await Self.send(1, from: attacker, to: victim.account, http: http) == [200])
        // Three group creations fit in the share; the fourth does not (its event would be entry 2,501).
        for _ in 0..<3 {
            #expect(try await http.call(.POST, "/v1/groups", attacker, body: CreateGroupRequest(members: [victim.account])).status == 201)
        }
        let fourth = try await http.call(.POST, "/v1/groups", attacker, body: CreateGroupRequest(members: [victim.account]))
        #expect(fourth.status == 507)
        #expect(fourth.error?.code == .queueFull)
        let more = try await Self.send(1, from: attacker, to: victim.account, http: http)
        #expect(more == [507])
        #expect(try await Self.queueCount(relay, victim) == share)

        // Everyone else still reaches the victim.
        #expect(try await Self.send(5, from: friend, to: victim.account, http: http) == [200, 200, 200, 200, 200])

        // Once the victim reads and acks some of the attacker's messages, the attacker has room again.
        let ws = try await relay.connect(victim)
        var acked = 0
        while acked < 10, let frame = await ws.next(.message) {
            if let id = frame.envelope?.id, frame.envelope?.senderAccount == attacker.account {
                try ws.send(ClientFrame(type: .ack, ids: [id]))
                acked += 1
            }
        }
        #expect(await eventually(timeout: .seconds(15)) { (try? await Self.queueCount(relay, victim)) == share + 5 - 10 })
        #expect(try await Self.send(1, from: attacker, to: victim.account, http: http) == [200])
        await ws.close()
        try await relay.stop()
    }
}
