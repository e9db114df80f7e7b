import Foundation
import NIOCore
import ParleyTestSupport
import ParleyWire
import Testing
@testable import ParleyRelay

/// A resolver that answers from a script (per host, one answer per lookup; the last repeats), and falls back to
/// the system's.
actor ResolverScript {
    private var answers: [String: [[String]]]
    private(set) var lookups: [String] = []

    init(_ answers: [String: [[String]]]) {
        self.answers = answers
    }

    func next(_ host: String) -> [String]? {
        lookups.append(host)
        guard var queue = answers[host], let first = queue.first else { return nil }
        if queue.count > 1 {
            queue.removeFirst()
            answers[host] = queue
        }
        return first
    }
}

struct ScriptedResolver: PushAddressResolver {
    let script: ResolverScript

    func resolve(host: String, port: Int) async throws -> [SocketAddress] {
        if let ips = await script.next(host) {
            return try ips.map { try SocketAddress(ipAddress: $0, port: port) }
        }
        return try await SystemPushAddressResolver.shared.resolve(host: host, port: port)
    }
}

/// Issue 9, item 6: push endpoints may not point the relay at itself or its network (SSRF): only public https
/// endpoints, checked at registration and again at send time (connecting to the checked address), no redirects,
/// a bounded rate per origin.
@Suite("Push endpoint policy", .timeLimit(.minutes(3)))
struct PushPolicyTests {
    static func start(limits: RelayLimits = RelayLimits(), resolver: ResolverScript? = nil) async throws -> TestRelay {
        guard let resolver else { return try await TestRelay.start(limits: limits) }
        return try await TestRelay.start(limits: limits, pushResolver: ScriptedResolver(script: resolver))
    }

    @Test func nonPublicEndpointsAreRefusedAtRegistration() async throws {
        let relay = try await Self.start()
        let http = relay.http
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let refused = [
            "https://127.0.0.1/push", "https://127.8.9.10:8443/push", "https://[::1]/push", "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/", "https://172.16.0.1/", "https://192.168.1.1/", "https://100.64.0.1/", "https://0.0.0.0/",
            "https://[::]/", "https://[fc00::1]/", "https://[fd12:3456::1]/", "https://[fe80::1]/", "https://[ff02::1]/",
            "https://224.0.0.1/", "https://255.255.255.255/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a9fe:a9fe]/", "https://[2002:7f00:1::]/", "https://localhost/push", "https://2130706433/",
            "https://127.1/", "https://user:secret@93.184.216.34/", "http://93.184.216.34/push",
        ]
        for endpoint in refused {
            let reply = try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: endpoint))
            #expect(reply.status == 400, "\(endpoint) was accepted")
            #expect(reply.error?.code == .invalidField)
        }
        // A public address is fine (nothing is sent: no message comes).
        let accepted = try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: "https://93.184.216.34/push/bob"))
        #expect(accepted.status == 204)
        try await relay.stop()
    }

    @Test func addressClassification() throws {
        func v4(_ text: String) throws -> Bool { PushAddress.isPublic(try SocketAddress(ipAddress: text, port: 443)) }
        for address in ["8.8.8.8", "93.184.216.34", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1"] {
            #expect(try v4(address), "\(address)")
        }
        for address in [
            "127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.0.1", "100.64.0.1", "100.127.255.255",
            "0.1.2.3", "224.1.1.1", "239.255.255.255", "240.0.0.1", "192.0.2.1", "198.51.100.1", "203.0.113.1",
            "198.18.0.1", "192.0.0.8",
        ] {
            #expect(try !v4(address), "\(address)")
        }
        for address in ["2001:4860:4860::8888", "2a00:1450:4001:80e::200e", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            #expect(try v4(address), "\(address)")
        }
        for address in [
            "::", "::1", "fe80::1", "fc00::1", "fdff::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1",
            "2001:db8::1", "2001::1", "2002:c000:0201::", "100::1", "::127.0.0.1", "3fff::1",
        ] {
            #expect(try !v4(address), "\(address)")
        }
    }

    /// A redirect from the push service is not followed (the relay would otherwise reach whatever it points to).
    @Test func redirectsAreNotFollowed() async throws {
        let receiver = try await PushReceiver.start()
        var limits = PushTests.limits()
        limits.pushCoalesceMilliseconds = 100
        let relay = try await Self.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        await receiver.log.redirect("/push/bob", to: receiver.url("/elsewhere/bob"))
        #expect(try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: receiver.url("/push/bob"))).status == 204)
        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        #expect(await eventually(timeout: .seconds(15)) { await receiver.log.pushes(to: "/push/bob").count >= 1 })
        // A 3xx is a final answer: no retry and no request to where it points, within the backoff schedule.
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(await receiver.log.pushes(to: "/push/bob").count == 1)
        #expect(await receiver.log.pushes(to: "/elsewhere/bob").isEmpty)
        try await relay.stop()
        try await receiver.stop()
    }

    /// The request goes to the address the relay checked, under the endpoint's name (`Host` keeps it): the HTTP
    /// client does not resolve the name itself.
    @Test func pushesConnectToTheCheckedAddress() async throws {
        let receiver = try await PushReceiver.start()
        let script = ResolverScript(["push.parley.test": [["127.0.0.1"]]])
        var limits = PushTests.limits()
        limits.pushCoalesceMilliseconds = 100
        let relay = try await Self.start(limits: limits, resolver: script)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let endpoint = "http://push.parley.test:\(receiver.port)/push/bob"
        #expect(try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: endpoint)).status == 204)
        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        #expect(await eventually(timeout: .seconds(15)) { await receiver.log.pushes(to: "/push/bob").count == 1 })
        let push = try #require(await receiver.log.pushes(to: "/push/bob").first)
        #expect(push.host == "push.parley.test:\(receiver.port)")
        // Registration and the push each resolved the name once, through the relay's resolver.
        #expect(await script.lookups.filter { $0 == "push.parley.test" }.count == 2)
        try await relay.stop()
        try await receiver.stop()
    }

    /// DNS rebinding: a name that resolved to a public address at registration and to a loopback one at send time
    /// reaches nothing, and the endpoint is dropped.
    @Test func rebindingIsCaughtAtSendTime() async throws {
        let listener = try CountingListener()
        defer { listener.stop() }
        let script = ResolverScript(["localhost": [["93.184.216.34"], ["127.0.0.1"]]])
        var limits = RelayLimits()
        limits.pushCoalesceMilliseconds = 100
        limits.pushBackoffBaseMilliseconds = 50
        let relay = try await Self.start(limits: limits, resolver: script)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let endpoint = "https://localhost:\(listener.port)/push/bob"
        #expect(try await http.call(.PUT, "/v1/push", bob, body: PushSubscriptionRequest(endpoint: endpoint)).status == 204)
        let auth = try #require(try await relay.running.core.store.deviceAuth(account: bob.account, deviceId: 1))
        let address = DeviceAddress(accountId: auth.accountId, deviceId: 1)
        #expect(try await relay.running.core.store.pushEndpoint(address) == endpoint)

        #expect(try await http.sendToAll(from: alice, to: bob.account).status == 200)
        #expect(try await eventually(timeout: .seconds(15)) { try await relay.running.core.store.pushEndpoint(address) == nil })
        try await Task.sleep(for: .milliseconds(500))
        #expect(listener.count == 0)
        try await relay.stop()
    }

    /// Pushes to one origin are bounded (here a burst of 2): further ones are dropped and counted.
    @Test func pushesPerOriginAreBounded() async throws {
        let receiver = try await PushReceiver.start()
        var limits = PushTests.limits()
        limits.pushCoalesceMilliseconds = 100
        limits.pushBurstPerOrigin = 2
        limits.pushesPerSecondPerOrigin = 0.001
        let relay = try await Self.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        var devices: [DeviceCredentials] = []
        for index in 0..<4 {
            let device = try await http.register(Fixtures.uniqueName("d\(index)"))
            #expect(try await http.call(
                .PUT, "/v1/push", device, body: PushSubscriptionRequest(endpoint: receiver.url("/push/d\(index)"))).status == 204)
            devices.append(device)
        }
        for device in devices {
            #expect(try await http.sendToAll(from: alice, to: device.account).status == 200)
        }
        #expect(await eventually(timeout: .seconds(15)) {
            (try? await relay.metric("parley_relay_pushes_refused_total")) == 2
        })
        #expect(await receiver.log.pushes.count == 2)
        try await relay.stop()
        try await receiver.stop()
    }
}
