import ArgumentParser
import Foundation
import ParleyCrypto
import ParleyProtocol

// The protocol-layer benchmark (`parley-bench crypto`, also built alone as `parley-crypto-bench`,
// which needs no relay or client code and so builds in a fraction of the time in release).

public struct Crypto: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Protocol-layer throughput on one core: one chain, ping-pong, sender keys, session setup (X3DH and PQXDH), Kyber1024.",
        discussion: """
            Session setup is measured for X3DH (version 3) and PQXDH (version 4, Kyber1024) in alternating runs of \
            the same invocation, and the ratio of their CPU-time rates is printed (target: PQXDH >= 0.8x X3DH).
            With --anchors, vodozemac (Matrix's Olm and Megolm, through its PyPI binding, installed by \
            tools/bench/setup.sh) does the same work in the same invocation, right after each case, and \
            the ratio of the two CPU-time rates is printed: Megolm for sender keys, Olm for the 1:1 cases.
            """)

    @Option(help: "Messages per measured run.") var messages = 200_000
    @Option(help: "Messages per ping-pong run.") var pingPongMessages = 20_000
    @Option(help: "Session setups per run.") var setups = 2_000
    @Option(help: "Measured runs per case (the best and median are reported).") var runs = 5
    @Option(help: "Plaintext size in bytes.") var size = 200
    @Option(help: "Run only cases whose name contains this text.") var only: String?
    @Flag(help: "Print every run's rate.") var verbose = false
    @Flag(help: "Measure vodozemac's Olm and Megolm in the same run and print the ratios.") var anchors = false
    @Option(help: "The Python interpreter with vodozemac installed (tools/bench/setup.sh).")
    var anchorPython = "tools/bench/.venv/bin/python"
    @Option(help: "The anchor script.") var anchorScript = "tools/bench/vodozemac_anchor.py"

    public init() {}

    public func run() throws {
        if anchors {
            guard FileManager.default.isExecutableFile(atPath: anchorPython), FileManager.default.fileExists(atPath: anchorScript) else {
                throw ValidationError("--anchors needs \(anchorPython) and \(anchorScript): run tools/bench/setup.sh from the repository root")
            }
        }
        print("parley-bench crypto: \(size)-byte messages, \(runs) runs per case, one thread")
        print("msg/s: wall clock (best and median run); msg/CPU-s: per second of this thread's CPU time (median run)")
        if anchors {
            print("anchors: vodozemac \(anchorVersion()) (Python binding), msg per second of its process's CPU time, measured right after each case")
        }
        print(Table.row(["case", "msg/s best", "msg/s median", "msg/CPU-s", "p50 us", "p99 us", "p99.9 us", "target", "ratio"]))
        let plaintext = [UInt8](repeating: 0x61, count: size)
        try report("1:1 one chain (encrypt+decrypt)", target: 100_000, anchor: ("olm-one-chain", min(messages, 50_000))) {
            try BenchSession.oneChain(messages: messages, plaintext: plaintext)
        }
        try report("1:1 ping-pong (DH step per message)", target: 8_000, anchor: ("olm-ping-pong", pingPongMessages)) {
            try BenchSession.pingPong(messages: pingPongMessages, plaintext: plaintext)
        }
        let senderKeyMessages = max(messages / 20, 1_000)
        try report("sender key (encrypt+decrypt)", target: nil, anchor: ("megolm", senderKeyMessages)) {
            try BenchSession.senderKey(messages: senderKeyMessages, plaintext: plaintext)
        }
        try compareSetups(plaintext: plaintext)
        let kemOperations = max(setups, 1_000)
        let kemInputs = try BenchSession.KEMInputs(count: kemOperations)
        try report("Kyber1024 keygen (ops)", target: nil, anchor: nil) { try BenchSession.kemKeygen(kemInputs) }
        try report("Kyber1024 encaps (ops)", target: nil, anchor: nil) { try BenchSession.kemEncaps(kemInputs) }
        try report("Kyber1024 decaps (ops)", target: nil, anchor: nil) { try BenchSession.kemDecaps(kemInputs) }
    }

    /// X3DH and PQXDH session setup (bundle -> first message -> reply), their runs alternating so
    /// that both see the same machine, and the ratio of their median CPU-time rates.
    private func compareSetups(plaintext: [UInt8]) throws {
        let x3dhName = "X3DH setup (bundle->msg->reply)", pqxdhName = "PQXDH setup (bundle->msg->reply)"
        if let only, !x3dhName.contains(only), !pqxdhName.contains(only), !"session setup".contains(only) { return }
        var x3dh: [Measurement] = [], pqxdh: [Measurement] = []
        for _ in 0..<runs {
            x3dh.append(try BenchSession.setup(count: setups, plaintext: plaintext, postQuantum: false))
            pqxdh.append(try BenchSession.setup(count: setups, plaintext: plaintext, postQuantum: true))
        }
        let x3dhRate = printRow(x3dhName, results: x3dh, target: nil)
        let pqxdhRate = printRow(pqxdhName, results: pqxdh, target: nil)
        print(String(format: "    PQXDH / X3DH setup = %.2fx (msg/CPU-s medians, alternating runs; target >= 0.80x)", pqxdhRate / x3dhRate))
    }

    private func report(_ name: String, target: Double?, anchor: (String, Int)?, _ body: () throws -> Measurement) throws {
        if let only, !name.contains(only) { return }
        var results: [Measurement] = []
        for _ in 0..<runs { results.append(try body()) }
        let cpuMedian = printRow(name, results: results, target: target)
        if anchors, let (anchorCase, anchorMessages) = anchor {
            let anchorRuns = try runAnchor(anchorCase, messages: anchorMessages)
            let anchorCPU = anchorRuns.map(\.cpu).sorted()
            let anchorMedian = anchorCPU[anchorCPU.count / 2]
            if verbose { print("    anchor runs (msg/CPU-s): " + anchorCPU.map { String(format: "%.0f", $0) }.joined(separator: " ")) }
            print("    vodozemac \(anchorCase): \(String(format: "%.0f", anchorMedian)) msg/CPU-s (median of \(anchorRuns.count), "
                + "wall \(String(format: "%.0f", anchorRuns.map(\.wall).sorted()[anchorRuns.count / 2])) msg/s)"
                + " -> Parley / vodozemac = \(String(format: "%.2f", cpuMedian / anchorMedian))x")
        }
    }

    /// Prints one case's row; returns its median CPU-time rate.
    private func printRow(_ name: String, results: [Measurement], target: Double?) -> Double {
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
        return cpuMedian
    }

    /// Runs the anchor script for one case; its runs' CPU-time and wall-clock rates.
    private func runAnchor(_ anchorCase: String, messages: Int) throws -> [(cpu: Double, wall: Double)] {
        let output = try runPython([
            anchorScript, "--case", anchorCase, "--messages", String(messages), "--runs", String(runs), "--size", String(size),
        ])
        var results: [(cpu: Double, wall: Double)] = []
        for line in output.split(separator: "\n") where !line.isEmpty {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let cpu = object["cpu_rate"] as? Double, let wall = object["wall_rate"] as? Double
            else { throw ValidationError("unexpected anchor output: \(line)") }
            results.append((cpu, wall))
        }
        guard !results.isEmpty else { throw ValidationError("the anchor \(anchorCase) printed no runs") }
        return results
    }

    private func anchorVersion() -> String {
        (try? runPython(["-c", "from importlib.metadata import version; print(version('vodozemac'))"]))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }

    private func runPython(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: anchorPython)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(anchorPython) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The benchmarks' table rows (also used by `parley-bench kem`).
public enum Table {
    static let widths = [38, 11, 13, 10, 9, 9, 10, 8, 7]
    public static func row(_ cells: [String]) -> String {
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

/// This thread's CPU time in seconds.
public func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

enum BenchSession {
    static let alice = ProtocolAddress(name: "alice", deviceId: 1)
    static let bob = ProtocolAddress(name: "bob", deviceId: 1)

    /// Bob's published keys (with a Kyber prekey when `postQuantum`) and an empty Alice, ready
    /// for PQXDH (or X3DH).
    static func unconnected(postQuantum: Bool = true) throws -> (InMemoryProtocolStore, InMemoryProtocolStore, PreKeyBundle) {
        let aliceStore = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let bobIdentity = try IdentityKeyPair.generate()
        let bobStore = InMemoryProtocolStore(identity: bobIdentity, registrationId: 2)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0)
        let oneTime = PreKeyRecord(id: 1, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        bobStore.storeSignedPreKey(signed)
        bobStore.storePreKey(oneTime)
        var kyber: PreKeyBundle.KyberPreKey? = nil
        if postQuantum {
            let record = try KyberPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0, lastResort: true)
            bobStore.storeKyberPreKey(record)
            kyber = PreKeyBundle.KyberPreKey(id: 1, publicKey: record.keyPair.publicKey, signature: record.signature)
        }
        let bundle = PreKeyBundle(
            registrationId: 2, deviceId: 1, identityKey: bobIdentity.identityKey, signedPreKeyId: 1,
            signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: 1,
            preKey: oneTime.keyPair.publicKey, kyberPreKey: kyber)
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
        case .preKey(let m):
            return try SessionCipher.decrypt(try PreKeySignalMessage(serialized: m.serialized), from: from, store: store, policy: .allowClassical)
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

    /// A session set up end to end: Alice processes a bundle (signature checks, PQXDH or X3DH:
    /// encapsulation), encrypts; Bob runs the responder's side (decapsulation) and decrypts,
    /// then replies; Alice decrypts the reply. Identities and prekeys (the Kyber prekey too) are
    /// generated beforehand, outside the measurement.
    static func setup(count: Int, plaintext: [UInt8], postQuantum: Bool) throws -> Measurement {
        let prepared = try (0..<count).map { _ in try unconnected(postQuantum: postQuantum) }
        let policy: SessionPolicy = postQuantum ? .requirePostQuantum : .allowClassical
        return try timed(count) { i in
            let (a, b, bundle) = prepared[i]
            try SessionBuilder.process(bundle: bundle, for: bob, store: a, policy: policy)
            try deliver(try SessionCipher.encrypt(plaintext, for: bob, store: a), to: b, from: alice)
            try deliver(try SessionCipher.encrypt(plaintext, for: alice, store: b), to: a, from: bob)
        }
    }

    /// Fresh randomness for Kyber1024 operations, drawn before the timed loops.
    struct KEMInputs {
        let pair: KEMKeyPair
        let seeds: [[UInt8]]
        let messages: [[UInt8]]
        let ciphertexts: [KEMCiphertext]

        init(count: Int) throws {
            let random = SystemRandom.shared
            pair = try KEMKeyPair.generate(using: random)
            seeds = (0..<count).map { _ in random.draw(64, purpose: .kemKeySeed) }
            messages = (0..<count).map { _ in random.draw(32, purpose: .kemEncapsulation) }
            let pair = pair
            ciphertexts = try messages.map { try pair.publicKey.encapsulate(randomness: $0).ciphertext }
        }
    }

    static func kemKeygen(_ inputs: KEMInputs) throws -> Measurement {
        try timed(inputs.seeds.count) { i in _ = try KEMKeyPair(seed: inputs.seeds[i]) }
    }

    static func kemEncaps(_ inputs: KEMInputs) throws -> Measurement {
        try timed(inputs.messages.count) { i in _ = try inputs.pair.publicKey.encapsulate(randomness: inputs.messages[i]) }
    }

    static func kemDecaps(_ inputs: KEMInputs) throws -> Measurement {
        try timed(inputs.ciphertexts.count) { i in _ = try inputs.pair.secretKey.decapsulate(inputs.ciphertexts[i]) }
    }
}
