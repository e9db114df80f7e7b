import Foundation
import ParleyTestSupport
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Web Push with VAPID", .timeLimit(.minutes(3)))
struct PushTests {
    static func limits() -> RelayLimits {
        var limits = RelayLimits()
        limits.allowInsecurePushEndpoints = true
        limits.pushCoalesceMilliseconds = 300
        limits.pushBackoffBaseMilliseconds = 50
        limits.pushMaxAttempts = 4
        return limits
    }

    @Test func contentFreeCoalescedPushWithValidVAPID() async throws {
        let receiver = try await PushReceiver.start()
        var limits = Self.limits()
        // Wide enough that the burst below fits in one window even on a loaded machine (a 1.5 s window
        // saw the five sends spread over two windows in a CI run with every suite in parallel).
        limits.pushCoalesceMilliseconds = 4_000
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let vapid = try await http.call(.GET, "/v1/push/vapid").decode(VAPIDKeyResponse.self)
        #expect(Base64URL.decode(vapid.publicKey)?.count == 65)

        // https only, unless allowed (it is, here); garbage refused.
        let bad = try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: "not a url"))
        #expect(bad.status == 400)
        let set = try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: receiver.url("/push/bob")))
        #expect(set.status == 204)

        // A burst of 5 messages to offline bob: one push, empty body, valid VAPID with the announced key.
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<5 { group.addTask { try await http.sendToAll(from: alice, to: bob.account).status } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == [200, 200, 200, 200, 200])
        #expect(await eventually(timeout: .seconds(15)) { await receiver.log.pushes(to: "/push/bob").count >= 1 })
        try await Task.sleep(for: .milliseconds(4_500))  // a second push, if any, would come within a window
        let pushes = await receiver.log.pushes(to: "/push/bob")
        #expect(pushes.count == 1)
        #expect(pushes.first?.vapidValid == true)
        #expect(pushes.first?.bodyBytes == 0)
        #expect(pushes.first?.publicKey == vapid.publicKey)
        #expect(pushes.first?.ttl != nil)

        // Online: no push.
        let ws = try await relay.connect(bob)
        _ = try await ws.backlog()
        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        #expect(await ws.next(.message) != nil)
        try await Task.sleep(for: .milliseconds(2_000))
        #expect(await receiver.log.pushes(to: "/push/bob").count == 1)
        await ws.close()
        try await relay.stop()
        try await receiver.stop()
    }

    @Test func retriesWithBackoffAndDropsGoneEndpoints() async throws {
        let receiver = try await PushReceiver.start()
        let relay = try await TestRelay.start(limits: Self.limits())
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let carol = try await http.register(Fixtures.uniqueName("carol"))

        // bob's push service fails twice (503, 429), then accepts.
        await receiver.log.script("/push/bob", [503, 429])
        #expect(try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: receiver.url("/push/bob"))).status == 204)
        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        #expect(await eventually { await receiver.log.pushes(to: "/push/bob").count == 3 })
        let bobPushes = await receiver.log.pushes(to: "/push/bob")
        #expect(bobPushes.count == 3)
        #expect(bobPushes.allSatisfy { $0.vapidValid })

        // carol's endpoint is gone (410): dropped, no further pushes.
        let carolAuth = try #require(try await relay.running.core.store.deviceAuth(account: carol.account, deviceId: 1))
        let carolAddress = DeviceAddress(accountId: carolAuth.accountId, deviceId: 1)
        await receiver.log.script("/push/carol", [410])
        #expect(try await http.call(.PUT, "/v1/push", carol, body: PushSubscriptionRequest(endpoint: receiver.url("/push/carol"))).status == 204)
        #expect(try await http.sendToAll(from: alice, to: carol.account).status == 200)
        #expect(await eventually { await receiver.log.pushes(to: "/push/carol").count == 1 })
        // The endpoint was dropped: the next message causes no push.
        #expect(try await eventually { try await relay.running.core.store.pushEndpoint(carolAddress) == nil })
        #expect(try await http.sendToAll(from: alice, to: carol.account).status == 200)
        try await Task.sleep(for: .milliseconds(700))
        #expect(await receiver.log.pushes(to: "/push/carol").count == 1)
        try await relay.stop()
        try await receiver.stop()
    }
}
