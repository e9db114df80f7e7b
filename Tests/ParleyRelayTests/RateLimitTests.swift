import Foundation
import NIOCore
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, items 5 and 11: the registration and link-claim limit keys on the matched route (path spellings the
/// router accepts do not bypass it); the limiter evicts idle buckets one at a time instead of dropping all of
/// them when it is full; IPv6 peers are keyed by /64.
@Suite("Rate limits", .timeLimit(.minutes(3)))
struct RateLimitTests {
    /// At the default limits (burst 20, 30 a minute), registrations through `/v1/accounts/`, `//v1/accounts`
    /// and `/v1//accounts` (the router's spellings of `/v1/accounts`) share the registration budget: they are
    /// refused once it is spent, and no more pass than the burst and what refilled meanwhile.
    @Test func creationLimitKeysOnTheMatchedRoute() async throws {
        let relay = try await TestRelay.start()
        let spellings = ["/v1/accounts/", "//v1/accounts", "/v1//accounts"]
        let started = ContinuousClock.now
        var created = 0
        var limited = 0
        for index in 0..<300 where limited == 0 {
            let body = try WireCoding.encoder().encode(
                RegisterAccountRequest(name: Fixtures.uniqueName("r\(index)"), device: Fixtures.keys(oneTimeCount: 0)))
            let client = try RawHTTP(port: relay.port)
            let path = spellings[index % spellings.count]
            #expect(await client.write(
                "POST \(path) HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"))
            #expect(await client.write(body))
            let response = try #require(await client.readResponse())
            client.close()
            switch response.status {
            case 201: created += 1
            case 429: limited += 1
            default: Issue.record("unexpected status \(response.status) for \(path)")
            }
        }
        // Whatever refilled while the test ran (0.5 a second) may pass on top of the burst.
        let elapsed = ContinuousClock.now - started
        let refilled = Int(Double(elapsed.components.seconds + 1) * relay.limits.creationsPerSecondPerAddress) + 1
        #expect(limited == 1)
        #expect(created >= relay.limits.creationBurstPerAddress)
        #expect(created <= relay.limits.creationBurstPerAddress + refilled)
        try await relay.stop()
    }

    /// A drained bucket stays drained while more keys than the limiter holds come and go (many IPv6
    /// addresses): only idle buckets are evicted, never all of them at once. (A limiter of 2,000 buckets here;
    /// the relay's hold 100,000 and evict the same way.)
    @Test func limiterEvictsIdleBucketsNotEveryone() async {
        #expect(RateLimiter.defaultMaxKeys == 100_000)
        let limiter = RateLimiter(capacity: 5, ratePerSecond: 0.000_1, maxKeys: 2_000)
        let now = ContinuousClock.now
        for _ in 0..<5 { #expect(limiter.allow("victim-of-reset", now: now)) }
        #expect(!limiter.allow("victim-of-reset", now: now))
        // 6,000 other keys, three times what the limiter holds, while the drained key keeps asking.
        for index in 0..<6_000 {
            _ = limiter.allow("addr-\(index)", now: now)
            if index % 100 == 0 { #expect(!limiter.allow("victim-of-reset", now: now)) }
        }
        #expect(!limiter.allow("victim-of-reset", now: now))
        #expect(limiter.count == 2_000)
        // Full (refilled) buckets go first: they are the same as no bucket.
        let small = RateLimiter(capacity: 2, ratePerSecond: 1, maxKeys: 2)
        #expect(small.allow("a", now: now))
        #expect(small.allow("a", now: now))
        #expect(small.allow("b", now: now + .seconds(10)))  // a refilled meanwhile
        #expect(small.allow("c", now: now + .seconds(10)))  // evicts a (full), keeps b
        #expect(small.allow("b", now: now + .seconds(10)))
        #expect(!small.allow("b", now: now + .seconds(10)))
    }

    /// IPv6 addresses of one /64 share a key; IPv4 and IPv4-mapped addresses are keyed by the IPv4 address.
    @Test func peersAreKeyedByAddressAndIPv6Slash64() throws {
        let a = try SocketAddress(ipAddress: "2001:db8:1:2:aaaa::1", port: 1)
        let b = try SocketAddress(ipAddress: "2001:db8:1:2:ffff:ffff:ffff:ffff", port: 2)
        let c = try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1)
        #expect(PeerAddressKey.key(a) == PeerAddressKey.key(b))
        #expect(PeerAddressKey.key(a) != PeerAddressKey.key(c))
        #expect(PeerAddressKey.key(try SocketAddress(ipAddress: "192.0.2.7", port: 1)) == "192.0.2.7")
        #expect(PeerAddressKey.key(try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 1)) == "192.0.2.7")
    }
}
