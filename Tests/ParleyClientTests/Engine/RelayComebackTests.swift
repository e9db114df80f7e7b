import AsyncHTTPClient
import Foundation
@testable import ParleyClient
import Testing

/// A device reaches a relay that was down as soon as it is back (issue 13's 30-minute runs: an admin's request
/// failed with "connection refused" seconds after the relay had restarted and answered others).
///
/// The cause was the HTTP client's connection pool: with connection establishment retried, every refused attempt
/// during an outage lengthened the pool's own backoff (100 ms x 1.25^n, up to 60 s), the backing-off connection
/// slots stayed counted against the pool's limit, and a request made after the relay returned waited for one of
/// them until the 10 s connect timeout, then failed with the last refusal. Now a refused connection fails the
/// request at once and the device's own retry (outbox, connection loop) decides when to try again.
@Suite struct RelayComebackTests {
    /// Fails before the fix: the request waited for the full connect timeout (10 s) in the pool's backoff.
    @Test(.timeLimit(.minutes(2))) func aRefusedConnectionFailsTheRequestAtOnce() async throws {
        let harness = try await EngineHarness()
        let relay = RelayClient(baseURL: harness.baseURL, http: ParleyHTTP.shared)
        _ = try await relay.health()
        try await harness.stopRelay()

        // Sixteen at once (a group fan-out's worth), as a busy device would while the relay is down.
        let started = ContinuousClock.now
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 { group.addTask { (try? await relay.health()) != nil } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        let waited = ContinuousClock.now - started
        #expect(outcomes.allSatisfy { !$0 })
        // Well below the 10 s connect timeout the requests used to wait out, with room for a loaded machine.
        #expect(waited < .seconds(5), "requests to a stopped relay took \(waited) to fail")
        await harness.finish()
    }

    /// An outage long enough for many refused attempts (online devices' connection loops at their default backoff,
    /// and a busy device's requests), then the relay comes back: the devices' next requests are answered at once and
    /// the conversation goes on, without waiting out a backoff the pool kept from the outage.
    @Test(.timeLimit(.minutes(3))) func devicesReachTheRelayAsSoonAsItIsBack() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let bobLog = await EventLog(bob)
        let loops = [Task { await alice.run() }, Task { await bob.run() }]
        try await alice.send("before", to: bob.account.name)
        await bobLog.wait(for: "before") { $0.messageBody == "before" }

        try await harness.stopRelay()
        let relay = RelayClient(baseURL: harness.baseURL, http: ParleyHTTP.shared)
        let until = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < until {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<16 { group.addTask { _ = try? await relay.health() } }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await harness.startRelay()

        // Each of these could wait for a backing-off pool slot before the fix, and fail at the connect timeout.
        for round in 0..<5 {
            _ = try await relay.health()
            try await alice.send("after \(round)", to: bob.account.name)
        }
        for round in 0..<5 { await bobLog.wait(for: "after \(round)") { $0.messageBody == "after \(round)" } }
        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
