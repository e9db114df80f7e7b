import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// Connection churn: many connect / close cycles (valid and refused) must each finish promptly, and the
/// relay must still stop at once. Opt-in: `PARLEY_RELAY_STRESS=1 swift test --filter ConnectionChurnStress`.
@Suite("Connection churn stress", .enabled(if: ProcessInfo.processInfo.environment["PARLEY_RELAY_STRESS"] == "1"))
struct ConnectionChurnStress {
    @Test func connectAndCloseRepeatedly() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        var slow = 0
        for _ in 0..<40 {
            let start = ContinuousClock.now
            let refused = try await WSTestClient.connect(port: relay.port, authorization: nil, query: "?ticket=bogus")
            #expect(await refused.failed())
            let ws = try await relay.connect(alice)
            _ = try await ws.backlog()
            await ws.close()
            if start.duration(to: .now) > .seconds(2) { slow += 1 }
        }
        #expect(slow == 0)
        let start = ContinuousClock.now
        try await relay.stop()
        #expect(start.duration(to: .now) < .seconds(2))
    }
}
