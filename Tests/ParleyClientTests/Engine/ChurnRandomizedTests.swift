import Foundation
@testable import ParleyClient
import Testing

/// Seeded randomized end-to-end runs under membership churn (issue 13): see `EngineChurnRun`
/// (the engine over a real relay) and `CLIChurnRun` (the real `parley` binary, processes killed
/// with SIGKILL). A small configuration runs in CI; a longer one with any seed:
///
///     PARLEY_CHURN_MINUTES=30 PARLEY_CHURN_USERS=8 PARLEY_CHURN_LINKED=4 PARLEY_CHURN_RELAY=kill \
///       PARLEY_CHURN_SEED=7 swift test --skip-build --filter ChurnRandomizedTests/longRun
///
/// (`PARLEY_CHURN_OPS` sets an operation count instead of minutes; `longRunCLI` is the CLI variant.)
/// Every seed that ever failed is kept: the small configuration's in `regressionSeeds` (they run in CI), the
/// long configuration's in the comment below them (each with its own deterministic test in CI).
@Suite(.serialized)
struct ChurnRandomizedTests {
    /// Seeds that once went wrong (kept so that they keep passing): 5 and 8 left group messages
    /// undecryptable until repaired (a device that left had thrown away the keys of messages still
    /// queued for it).
    static let regressionSeeds: [UInt64] = [5, 8]

    // Seeds of the long configuration (`longRun` with the 30-minute command above) that once failed, to run again
    // (`PARLEY_CHURN_SEED=7`, `=11`) after any change to the client's transport or the relay's restart path: 11
    // (operation 1057) and 7 (operation 1633) stopped on a request refused after the relay was back, which was the
    // HTTP pool's backoff outliving the outage (their regression case in CI: `RelayComebackTests`).

    static let small = ChurnConfiguration(seed: 20_250_601, users: 4, operations: 90, duration: nil, linkedDevices: 1, relayKills: false)

    /// `PARLEY_CHURN_SEED` picks another seed for the small runs.
    static func seeded(_ base: ChurnConfiguration) -> ChurnConfiguration {
        var config = base
        if let seed = ProcessInfo.processInfo.environment["PARLEY_CHURN_SEED"].flatMap(UInt64.init) { config.seed = seed }
        return config
    }

    @Test(.timeLimit(.minutes(5))) func engineSmall() async throws {
        let config = Self.seeded(Self.small)
        let report = try await EngineChurnRun(config).run()
        print("engine churn (\(config)): \(report)")
        #expect(report.violations.isEmpty, "\(report.violations.prefix(20).joined(separator: "\n"))")
        #expect(report.accepted > 0)
    }

    @Test(.timeLimit(.minutes(10)), arguments: regressionSeeds) func engineRegression(seed: UInt64) async throws {
        var config = Self.small
        config.seed = seed
        let report = try await EngineChurnRun(config).run()
        #expect(report.violations.isEmpty, "seed \(seed): \(report.violations.prefix(20).joined(separator: "\n"))")
    }

    @Test(.timeLimit(.minutes(5))) func cliSmall() async throws {
        let config = Self.seeded(CLIChurnRun.small)
        let report = try await CLIChurnRun(config).run()
        print("CLI churn (\(config)): \(report)")
        #expect(report.violations.isEmpty, "\(report.violations.prefix(20).joined(separator: "\n"))")
        #expect(report.accepted > 0)
    }

    /// The long configuration: only when `PARLEY_CHURN_MINUTES` or `PARLEY_CHURN_OPS` is set.
    @Test(
        .enabled(if: ProcessInfo.processInfo.environment["PARLEY_CHURN_MINUTES"] != nil
            || ProcessInfo.processInfo.environment["PARLEY_CHURN_OPS"] != nil),
        .timeLimit(.minutes(120)))
    func longRun() async throws {
        let config = ChurnConfiguration.fromEnvironment(
            default: ChurnConfiguration(seed: 1, users: 8, operations: 2_000, duration: nil, linkedDevices: 4, relayKills: true))
        let started = ContinuousClock.now
        let report = try await EngineChurnRun(config).run()
        print("engine churn (\(config)) in \(ContinuousClock.now - started): \(report)")
        #expect(report.violations.isEmpty, "\(report.violations.prefix(50).joined(separator: "\n"))")
    }

    @Test(
        .enabled(if: ProcessInfo.processInfo.environment["PARLEY_CHURN_CLI_MINUTES"] != nil),
        .timeLimit(.minutes(120)))
    func longRunCLI() async throws {
        var config = ChurnConfiguration.fromEnvironment(default: CLIChurnRun.small)
        if let minutes = ProcessInfo.processInfo.environment["PARLEY_CHURN_CLI_MINUTES"].flatMap(Double.init) {
            config.duration = .milliseconds(Int64(minutes * 60_000))
            config.operations = Int.max
        }
        let started = ContinuousClock.now
        let report = try await CLIChurnRun(config).run()
        print("CLI churn (\(config)) in \(ContinuousClock.now - started): \(report)")
        #expect(report.violations.isEmpty, "\(report.violations.prefix(50).joined(separator: "\n"))")
    }
}
