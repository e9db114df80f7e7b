import ArgumentParser
import Foundation
import Histogram
import ParleyCrypto
import ParleyCryptoBench

/// `parley-bench kem`: Kyber1024 (0x08) key generation, encapsulation and decapsulation on one
/// thread, with an X25519 anchor measured in the same run (one key generation plus one
/// agreement, the classical work PQXDH adds the KEM to), so the ratio does not depend on the
/// machine's speed or load.
struct KEMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kem",
        abstract: "Kyber1024 keygen / encaps / decaps rates and latency percentiles on one core, with an X25519 anchor.")

    @Option(help: "Operations per measured run.") var operations = 5_000
    @Option(help: "Measured runs per operation (the best and median are reported).") var runs = 5
    @Option(help: "Unmeasured operations before each case.") var warmup = 200

    func validate() throws {
        guard operations > 0, runs > 0, warmup >= 0 else { throw ValidationError("operations and runs must be positive") }
    }

    /// Rates and a latency histogram (nanoseconds) of one case over all its runs.
    struct Result {
        var wallRates: [Double] = []
        var cpuRates: [Double] = []
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 1_000_000_000, numberOfSignificantValueDigits: .three)

        var medianCPURate: Double { cpuRates.sorted()[cpuRates.count / 2] }
        /// Median CPU time of one operation, microseconds.
        var microseconds: Double { 1e6 / medianCPURate }
    }

    func run() throws {
        print("parley-bench kem: Kyber1024 (0x08, round 3), \(runs) runs of \(operations) operations per case, one thread")
        print("ops/s: wall clock (best and median run); ops/CPU-s: per second of this thread's CPU time (median run); latency per operation")
        print(Table.row(["case", "ops/s best", "ops/s median", "ops/CPU-s", "p50 us", "p99 us", "p99.9 us", "us/op", ""]))

        let random = SystemRandom.shared
        let pair = try KEMKeyPair.generate(using: random)
        // Fresh randomness per operation, drawn before the timed loops.
        let seeds = (0..<operations).map { _ in random.draw(64, purpose: .kemKeySeed) }
        let messages = (0..<operations).map { _ in random.draw(32, purpose: .kemEncapsulation) }
        let ciphertexts = try messages.map { try pair.publicKey.encapsulate(randomness: $0).ciphertext }
        let peers = try (0..<operations).map { _ in try PrivateKey.generate(using: random).publicKey }

        try measure("keygen") { i in _ = try KEMKeyPair(seed: seeds[i]) }
        try measure("encaps") { i in _ = try pair.publicKey.encapsulate(randomness: messages[i]) }
        try measure("decaps") { i in _ = try pair.secretKey.decapsulate(ciphertexts[i]) }
        let both = try measure("encaps + decaps") { i in
            let (secret, ciphertext) = try pair.publicKey.encapsulate(randomness: messages[i])
            guard try pair.secretKey.decapsulate(ciphertext) == secret else { throw ValidationError("decapsulation disagreed") }
        }
        let anchor = try measure("anchor: X25519 keygen + agreement") { i in
            _ = try PrivateKey.generate(using: random).agreement(with: peers[i])
        }
        print(String(format: "encaps + decaps = %.1f us of CPU per KEM exchange = %.2fx the X25519 anchor (%.1f us)",
                     both.microseconds, both.microseconds / anchor.microseconds, anchor.microseconds))
    }

    @discardableResult
    private func measure(_ name: String, _ body: (Int) throws -> Void) throws -> Result {
        for i in 0..<min(warmup, operations) { try body(i) }
        var result = Result()
        for _ in 0..<runs {
            let cpuStart = threadCPUSeconds()
            let start = monotonicNanos()
            for i in 0..<operations {
                let t0 = monotonicNanos()
                try body(i)
                _ = result.latency.record(max(monotonicNanos() &- t0, 1))
            }
            let wall = Double(monotonicNanos() &- start) * 1e-9
            let cpu = threadCPUSeconds() - cpuStart
            result.wallRates.append(Double(operations) / max(wall, 1e-9))
            result.cpuRates.append(Double(operations) / max(cpu, 1e-9))
        }
        let wall = result.wallRates.sorted()
        func us(_ percentile: Double) -> String { String(format: "%.1f", Double(result.latency.valueAtPercentile(percentile)) / 1000) }
        print(Table.row([
            name, String(format: "%.0f", wall.last ?? 0), String(format: "%.0f", wall[wall.count / 2]),
            String(format: "%.0f", result.medianCPURate), us(50), us(99), us(99.9), String(format: "%.1f", result.microseconds), "",
        ]))
        return result
    }
}
