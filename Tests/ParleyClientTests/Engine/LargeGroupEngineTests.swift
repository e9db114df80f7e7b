import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A 500-member group end to end at the relay's DEFAULT limits: one device per member, the bundles for
/// each sender's 499 pairwise sessions fetched in one batched request, every sender key handed out over those
/// sessions, one sender-key ciphertext fanned out by the relay, every member decrypting it and answering with
/// a delivery receipt. The creator's first message and three other members' first posts each reach all
/// members, and every receipt gets back.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct LargeGroupEngineTests {
    /// Members synced at once (each over its own WebSocket, all from loopback like the rest of the test).
    static let syncWidth = 10

    /// The relay's defaults, except account creation: the test registers 500 accounts from one address
    /// (loopback), which the per-address creation limit (20, then one per 2 s) is there to stop. Bundle
    /// budgets, request and frame rates, one-time prekey hand-outs: all at their defaults.
    static func limits() -> RelayLimits {
        var limits = RelayLimits()
        limits.creationBurstPerAddress = 1_000
        limits.creationsPerSecondPerAddress = 1_000
        return limits
    }

    @Test func fiveHundredMembersFirstPostsAtDefaultLimits() async throws {
        let harness = try await EngineHarness(limits: Self.limits())
        let count = 500
        var devices: [ParleyDevice] = []
        for start in stride(from: 0, to: count, by: 25) {
            try await withThrowingTaskGroup(of: ParleyDevice.self) { group in
                for i in start..<min(start + 25, count) { group.addTask { try await harness.register("m\(i)") } }
                for try await device in group { devices.append(device) }
            }
        }
        let creator = devices[0]
        let posters = Array(devices[1...3])
        let members = devices.dropFirst().map(\.account.name)
        let groupId = try await creator.createGroup(title: "five hundred", members: members)
        #expect(try creator.store.groupMembers(groupId: groupId).count == count)

        // The creator's first message: sessions with 499 members set up and the sender key handed out in
        // this one call (the outbox is empty when it returns: nothing was deferred by a rate limit).
        let first = try await creator.sendGroup("hello, all 500 of you", to: groupId)
        #expect(try creator.store.outboxCount() == 0)
        #expect(await creator.deferral == nil)
        try await Self.syncAll(devices.dropFirst())
        for member in devices.dropFirst() {
            #expect(try member.store.groupConversation(groupId: groupId).title == "five hundred")
        }

        // Three other members' first posts: each sets up its own 499 sessions.
        var posts: [(sender: ParleyDevice, uid: String, text: String)] = [(creator, first, "hello, all 500 of you")]
        for poster in posters {
            let text = "first post from \(poster.account.name)"
            let uid = try await poster.sendGroup(text, to: groupId)
            let deferral = await poster.deferral
            #expect(try poster.store.outboxCount() == 0, "\(poster.account.name)'s first post stayed queued: \(String(describing: deferral))")
            posts.append((poster, uid, text))
        }
        try await Self.syncAll(devices)

        for post in posts {
            var received = 0
            for member in devices where member !== post.sender {
                let conversation = try member.store.groupConversation(groupId: groupId)
                let messages = try member.store.messages(in: conversation.id, limit: 20).messages
                if messages.contains(where: { $0.body == post.text && $0.messageUid == post.uid }) { received += 1 }
            }
            #expect(received == count - 1, "\(post.text): \(received) of \(count - 1) members received it")
        }

        // Every member's delivery receipt reaches each sender.
        for post in posts {
            #expect(await post.sender.syncOnce(timeout: .seconds(120)))
            let id = try #require(try post.sender.store.message(uid: post.uid, sender: post.sender.account.name))
            let statuses = try #require(try post.sender.store.message(id: id)).statuses
            #expect(statuses.count == count - 1)
            let delivered = statuses.values.filter { $0 == .delivered }.count
            #expect(delivered == count - 1, "\(post.text): \(delivered) of \(count - 1) receipts")
        }
        for device in devices { await device.close() }
        await harness.finish()
    }

    /// Syncs every device once, `syncWidth` at a time; each drains its backlog and flushes its outbox
    /// (delivery receipts included).
    static func syncAll(_ devices: some Collection<ParleyDevice>) async throws {
        let all = Array(devices)
        try await withThrowingTaskGroup(of: (String, Bool).self) { group in
            var next = 0
            func start() {
                guard next < all.count else { return }
                let device = all[next]
                next += 1
                group.addTask { (device.account.name, await device.syncOnce(timeout: .seconds(60))) }
            }
            for _ in 0..<syncWidth { start() }
            while let (name, drained) = try await group.next() {
                #expect(drained, "\(name) did not drain its backlog")
                start()
            }
        }
    }
}
