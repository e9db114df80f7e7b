import ArgumentParser
import Foundation
import ParleyCrypto
import ParleyProtocol

@main
struct ParleyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-bench",
        abstract: "Parley benchmarks: throughput with latency percentiles and ratios to targets. Build with -c release.",
        subcommands: [
            Crypto.self, RelayThroughput.self, RelayLatency.self, RelayFanout.self, RelayIdle.self, RelayIdleClient.self,
            RelayAbuse.self, RelayAbuseSlowloris.self, ClientGroupSend.self, KEMBench.self,
        ])
}

struct Crypto: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Protocol-layer throughput on one core: one chain, ping-pong, sender keys, session setup.")

    @Option(help: "Messages per measured run.") var messages = 200_000
    @Option(help: "Messages per ping-pong run.") var pingPongMessages = 20_000
    @Option(help: "Session setups per run.") var setups = 2_000
    @Option(help: "Measured runs per case (the best and median are reported).") var runs = 5
    @Option(help: "Plaintext size in bytes.") var size = 200
    @Option(help: "Run only cases whose name contains this text.") var only: String?
    @Flag(help: "Print every run's rate.") var verbose = false

    func run() throws {
        print("parley-bench crypto: \(size)-byte messages, \(runs) runs per case, one thread")
        print("msg/s: wall clock (best and median run); msg/CPU-s: per second of this thread's CPU time (median run)")
        print(Table.row(["case", "msg/s best", "msg/s median", "msg/CPU-s", "p50 us", "p99 us", "p99.9 us", "target", "ratio"]))
        let plaintext = [UInt8](repeating: 0x61, count: size)
        try report("1:1 one chain (encrypt+decrypt)", target: 100_000, reference: ("vodozemac", 40_000)) {
            try BenchSession.oneChain(messages: messages, plaintext: plaintext)
        }
        try report("1:1 ping-pong (DH step per message)", target: 8_000, reference: ("vodozemac", 5_900)) {
            try BenchSession.pingPong(messages: pingPongMessages, plaintext: plaintext)
        }
        try report("sender key (encrypt+decrypt)", target: nil, reference: nil) {
            try BenchSession.senderKey(messages: max(messages / 20, 1_000), plaintext: plaintext)
        }
        try report("session setup (bundle -> first message)", target: nil, reference: nil) {
            try BenchSession.setup(count: setups, plaintext: plaintext)
        }
    }

    private func report(_ name: String, target: Double?, reference: (String, Double)?, _ body: () throws -> Measurement) throws {
        if let only, !name.contains(only) { return }
        var results: [Measurement] = []
        for _ in 0..<runs { results.append(try body()) }
        if verbose { print("    runs (msg/s): " + results.map { String(format: "%.0f", $0.rate) }.joined(separator: " ")) }
        let rates = results.map(\.rate).sorted()
        let best = rates.last ?? 0
        let median = rates[rates.count / 2]
        let cpuRates = results.map(\.cpuRate).sorted()
        let cpuMedian = cpuRates[cpuRates.count / 2]
        let latencies = results.flatMap(\.latencies).sorted()
        func pct(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] * 1e6
        }
        let targetText = target.map { String(Int($0)) } ?? "-"
        let ratioText = target.map { String(format: "%.2fx", cpuMedian / $0) } ?? "-"
        print(Table.row([name, String(format: "%.0f", best), String(format: "%.0f", median), String(format: "%.0f", cpuMedian),
                         String(format: "%.2f", pct(0.50)),
                         String(format: "%.2f", pct(0.99)), String(format: "%.2f", pct(0.999)), targetText, ratioText]))
        if let (refName, refRate) = reference {
            print("    msg/CPU-s = \(String(format: "%.2f", cpuMedian / refRate))x \(refName) (\(Int(refRate)) msg/s on this machine class)")
        }
    }
}

enum Table {
    static let widths = [38, 11, 13, 10, 9, 9, 10, 8, 7]
    static func row(_ cells: [String]) -> String {
        zip(cells, widths).enumerated().map { i, pair in
            let (text, width) = pair
            let pad = String(repeating: " ", count: max(0, width - text.count))
            return i == 0 ? text + pad : pad + text
        }.joined(separator: " ")
    }
}

/// Throughput over a run (wall clock and this thread's CPU time) and per-message latencies
/// (seconds). The CPU-time rate is what one core sustains; it does not drop when other processes
/// take the core away, which the wall-clock rate does.
struct Measurement {
    let rate: Double
    let cpuRate: Double
    let latencies: [Double]
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

enum BenchSession {
    static let alice = ProtocolAddress(name: "alice", deviceId: 1)
    static let bob = ProtocolAddress(name: "bob", deviceId: 1)

    /// Bob's published keys and an empty Alice, ready for X3DH.
    static func unconnected() throws -> (InMemoryProtocolStore, InMemoryProtocolStore, PreKeyBundle) {
        let aliceStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let bobIdentity = try IdentityKeyPair.generate()
        let bobStore = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0)
        let oneTime = PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        bobStore.storeSignedPreKey(signed)
        bobStore.storePreKey(oneTime)
        let bundle = PreKeyBundle(
            registrationId: 2, deviceId: 1, identityKey: bobIdentity.identityKey, signedPreKeyId: 1,
            signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: 1,
            preKey: oneTime.keyPair.publicKey)
        return (aliceStore, bobStore, bundle)
    }

    static func pair() throws -> (InMemoryProtocolStore, InMemoryProtocolStore) {
        let (aliceStore, bobStore, bundle) = try unconnected()
        try SessionBuilder.process(bundle: bundle, for: bob, store: aliceStore)
        return (aliceStore, bobStore)
    }

    /// An established session in both directions (the prekey phase is over).
    static func established() throws -> (InMemoryProtocolStore, InMemoryProtocolStore) {
        let (a, b) = try pair()
        try deliver(try SessionCipher.encrypt([1], for: bob, store: a), to: b, from: alice)
        try deliver(try SessionCipher.encrypt([2], for: alice, store: b), to: a, from: bob)
        return (a, b)
    }

    @discardableResult
    static func deliver(_ message: CiphertextMessage, to store: InMemoryProtocolStore, from: ProtocolAddress) throws -> [UInt8] {
        switch message {
        case .preKey(let m): return try SessionCipher.decrypt(try PreKeySignalMessage(serialized: m.serialized), from: from, store: store)
        case .signal(let m): return try SessionCipher.decrypt(try SignalMessage(serialized: m.serialized), from: from, store: store)
        }
    }

    static func timed(_ count: Int, _ body: (Int) throws -> Void) rethrows -> Measurement {
        var latencies = [Double](repeating: 0, count: count)
        let clock = ContinuousClock()
        let cpuStart = threadCPUSeconds()
        let start = clock.now
        for i in 0..<count {
            let t0 = clock.now
            try body(i)
            let d = clock.now - t0
            latencies[i] = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        let total = clock.now - start
        let cpu = threadCPUSeconds() - cpuStart
        let seconds = Double(total.components.seconds) + Double(total.components.attoseconds) * 1e-18
        return Measurement(rate: Double(count) / seconds, cpuRate: Double(count) / max(cpu, 1e-9), latencies: latencies)
    }

    static func oneChain(messages: Int, plaintext: [UInt8]) throws -> Measurement {
        let (a, b) = try established()
        return try timed(messages) { _ in
            let out = try SessionCipher.encrypt(plaintext, for: bob, store: a)
            let back = try deliver(out, to: b, from: alice)
            guard back.count == plaintext.count else { throw ProtocolError.badMAC }
        }
    }

    static func pingPong(messages: Int, plaintext: [UInt8]) throws -> Measurement {
        let (a, b) = try established()
        return try timed(messages) { i in
            if i % 2 == 0 {
                try deliver(try SessionCipher.encrypt(plaintext, for: bob, store: a), to: b, from: alice)
            } else {
                try deliver(try SessionCipher.encrypt(plaintext, for: alice, store: b), to: a, from: bob)
            }
        }
    }

    static func senderKey(messages: Int, plaintext: [UInt8]) throws -> Measurement {
        let (a, b) = try pair()
        let name = SenderKeyName(groupId: "bench", sender: alice)
        let skdm = try GroupCipher.createDistributionMessage(for: name, store: a)
        try GroupCipher.process(try SenderKeyDistributionMessage(serialized: skdm.serialized), for: name, store: b)
        return try timed(messages) { _ in
            let m = try GroupCipher.encrypt(plaintext, for: name, store: a)
            _ = try GroupCipher.decrypt(try SenderKeyMessage(serialized: m.serialized), from: name, store: b)
        }
    }

    /// Alice processes a bundle (signature check, X3DH), encrypts; Bob runs X3DH and decrypts.
    /// Identities and prekeys are generated beforehand, outside the measurement.
    static func setup(count: Int, plaintext: [UInt8]) throws -> Measurement {
        let prepared = try (0..<count).map { _ in try unconnected() }
        return try timed(count) { i in
            let (a, b, bundle) = prepared[i]
            try SessionBuilder.process(bundle: bundle, for: bob, store: a)
            try deliver(try SessionCipher.encrypt(plaintext, for: bob, store: a), to: b, from: alice)
        }
    }
}
