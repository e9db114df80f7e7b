import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

/// The WebSocket ticket map is bounded and prunes expired tickets as it goes; `/metrics` is served on a
/// listener of its own, on loopback, not on the public port (issue 9, item 11).
@Suite("Tickets and metrics")
struct TicketAndMetricsTests {
    static func device(_ index: Int) -> AuthenticatedDevice {
        AuthenticatedDevice(accountId: Int64(index), account: "a\(index)", deviceId: 1)
    }

    @Test func theTicketMapIsBounded() async {
        let tickets = WebSocketTicketMap()
        // On a thread of its own: a hundred thousand issues must not hold a thread of the tests' concurrency pool.
        let issued = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            Thread {
                let now = ContinuousClock.now
                var issued = 0
                for index in 0..<(WebSocketTicketMap.maxOutstanding + 10) {
                    if tickets.issue(for: Self.device(index), credentialHash: Data(count: 32), now: now) != nil { issued += 1 }
                }
                continuation.resume(returning: issued)
            }.start()
        }
        #expect(issued == WebSocketTicketMap.maxOutstanding)
        #expect(tickets.outstanding == WebSocketTicketMap.maxOutstanding)
    }

    @Test func expiredTicketsArePrunedAsNewOnesAreIssued() {
        let tickets = WebSocketTicketMap()
        let start = ContinuousClock.now
        for index in 0..<1_000 { _ = tickets.issue(for: Self.device(index), credentialHash: Data(count: 32), now: start) }
        #expect(tickets.outstanding == 1_000)
        let later = start + WebSocketTicketMap.lifetime + .seconds(1)
        let fresh = tickets.issue(for: Self.device(0), credentialHash: Data(count: 32), now: later)
        #expect(fresh != nil)
        #expect(tickets.outstanding == 1)
        #expect(tickets.redeem(fresh ?? "", now: later)?.device == Self.device(0))
        #expect(tickets.outstanding == 0)
    }

    @Test func aDeviceKeepsOnlyItsNewestTickets() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        var tickets: [String] = []
        for _ in 0...WebSocketTicketMap.maxPerDevice {
            tickets.append(try await relay.http.call(.POST, "/v1/ws/tickets", alice).decode(WebSocketTicketResponse.self).ticket)
        }
        let oldest = try RawWebSocket(port: relay.port, authorization: nil, query: "?ticket=\(tickets[0])")
        #expect(try await oldest.handshakeStatus().hasPrefix("HTTP/1.1 401"))
        let newest = try await WSTestClient.connect(port: relay.port, authorization: nil, query: "?ticket=\(tickets[tickets.count - 1])")
        #expect(await newest.next(.queueEmpty) != nil)
        await newest.close()
        try await relay.stop()
    }

    @Test func metricsAreNotServedOnThePublicPort() async throws {
        let relay = try await TestRelay.start()
        #expect(try await relay.http.call(.GET, "/metrics").status == 404)
        #expect(try await relay.metricsText().contains("parley_relay_connections"))
        try await relay.stop()
    }
}
