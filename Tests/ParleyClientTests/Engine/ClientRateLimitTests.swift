import Foundation
import ParleyClient
import ParleyRelay
import ParleyTestSupport
import ParleyWire
import Testing

/// The relay's `429` as the client core and the CLI see it, at the relay's default limits: the per-address
/// account-creation limit (20 at once, then one per 2 s) is the one a test reaches from loopback.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct ClientRateLimitTests {
    /// Registers accounts from loopback, never waiting out a 429, until the relay rate-limits creation.
    /// Returns the error of the refused registration.
    static func exhaustCreation(_ harness: EngineHarness) async throws -> (any Error)? {
        let noWait = RateLimitPolicy(maxTotalWaitSeconds: 0)
        for i in 0..<(RelayLimits().creationBurstPerAddress * 4) {
            let name = "fill\(i)-\(UUID().uuidString.prefix(6).lowercased())"
            do {
                let device = try await ParleyDevice.register(
                    name: name, serverURL: harness.baseURL, storePath: harness.dir.appendingPathComponent("\(name).sqlite").path,
                    rateLimit: noWait)
                await device.close()
            } catch {
                return error
            }
        }
        return nil
    }

    /// Beyond the wait a request allows, a 429 is a typed error carrying the relay's `Retry-After`; it is
    /// transient (an outbox entry stays queued), and it is not an unreachable relay.
    @Test func aRateLimitBeyondTheWaitIsATypedError() async throws {
        let harness = try await EngineHarness(limits: RelayLimits())
        let error = try await Self.exhaustCreation(harness)
        guard case RelayClientError.rateLimited(let seconds, let message)? = error else {
            Issue.record("expected RelayClientError.rateLimited, got \(String(describing: error))")
            await harness.finish()
            return
        }
        #expect(seconds >= 1)
        #expect(message.contains("rate limit"))
        #expect(RelayClientError.rateLimited(retryAfterSeconds: seconds, message: message).isTransient)
        #expect("\(RelayClientError.rateLimited(retryAfterSeconds: seconds, message: message))".contains("rate limited by the relay"))
        await harness.finish()
    }

    /// The real `parley register` against a relay that rate-limits it: it says it is rate limited and waits
    /// the relay's `Retry-After` (instead of failing with "relay refused (429)" or calling the relay
    /// unreachable), then registers.
    @Test func cliWaitsOutARateLimitAndSaysSo() async throws {
        let harness = try await EngineHarness(limits: RelayLimits())
        // The bucket refills one creation per 2 s: on a loaded machine the CLI may start after that refill
        // and not be limited; then the budget is used up again and the CLI runs again (at most 5 times).
        var limited: String?
        for attempt in 0..<5 where limited == nil {
            let error = try await Self.exhaustCreation(harness)
            if case RelayClientError.rateLimited? = error {} else {
                Issue.record("the creation limit was not reached: \(String(describing: error))")
                break
            }
            let home = harness.dir.appendingPathComponent("cli-home-\(attempt)").path
            let name = "late\(attempt)-\(UUID().uuidString.prefix(6).lowercased())"
            // --no-passphrase: the rate limit is the subject here; a sealed store's Argon2id runs before the
            // request (0.4 s, several on a loaded machine) and would let the bucket refill first.
            let (status, output) = try await CLI.run(CLI.binary, home: home, ["register", name, "--server", harness.baseURL, "--no-passphrase"])
            #expect(status == 0, "\(output)")
            #expect(output.contains("registered \(name)"), "\(output)")
            #expect(!output.contains("unreachable"), "\(output)")
            #expect(!output.contains("429"), "\(output)")
            if output.contains("parley: rate limited by the relay; retrying in ") { limited = output }
        }
        #expect(limited != nil, "parley register was never rate limited")
        await harness.finish()
    }
}
