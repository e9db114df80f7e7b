import ArgumentParser
import Foundation
import ParleyClient
import ParleyCrypto
import ParleyProtocol

/// The cost of erasing old key pages from the client store's WAL (issue 10, defect 4b): a
/// receive-path transaction (decrypt, store the advanced session) on a sealed `DeviceStore` as
/// built (a truncating checkpoint after every 64 replaced records), against the same transaction
/// followed by a truncating checkpoint every time, measured in the same run on the same files.
/// Also the cost of a first message that uses a one-time prekey (its deletion is erased at once).
struct ClientStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client-store",
        abstract: "Client store: cost of WAL checkpoint+truncate after key deletion (receive path). Build with -c release.")

    @Option(help: "Messages received per case.") var messages = 2_000
    @Option(help: "First messages (one-time prekey used and erased) per case.") var firstMessages = 200
    @Option(help: "Work folder (a temporary one by default).") var work: String?

    func run() throws {
        let dir = work.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("parley-bench-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if work == nil { try? FileManager.default.removeItem(at: dir) } }
        print("parley-bench client-store: sealed store (Argon2id interactive), synchronous = FULL, in \(dir.path)")
        print(Self.row(["case", "msg/s", "p50 us", "p99 us", "p99.9 us", "ratio"]))

        let asBuilt = try receive(in: dir, name: "as-built", messages: messages, scrubEach: false)
        let everyTime = try receive(in: dir, name: "every-time", messages: messages, scrubEach: true)
        Self.report("receive (as built: scrub per 64 records)", asBuilt, ratio: nil)
        Self.report("receive + scrub every message", everyTime, ratio: asBuilt.rate / max(everyTime.rate, 1))
        let first = try firstMessage(in: dir, count: firstMessages)
        Self.report("first message (prekey used, scrubbed)", first, ratio: nil)
        print("ratio: how many times slower the every-message scrub is than the batched one (same run)")
    }

    struct Run {
        let rate: Double
        let latencies: [Double]
    }

    static func row(_ cells: [String]) -> String {
        zip(cells, [42, 10, 9, 9, 10, 8]).enumerated().map { i, pair in
            let pad = String(repeating: " ", count: max(0, pair.1 - pair.0.count))
            return i == 0 ? pair.0 + pad : pad + pair.0
        }.joined()
    }

    /// Runs `body` `count` times; the rate is over the whole loop, latencies per call.
    static func timed(_ count: Int, _ body: (Int) throws -> Void) rethrows -> Run {
        let clock = ContinuousClock()
        var latencies: [Double] = []
        latencies.reserveCapacity(count)
        let start = clock.now
        for i in 0..<count {
            let t0 = clock.now
            try body(i)
            let d = clock.now - t0
            latencies.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        }
        let total = clock.now - start
        return Run(rate: Double(count) / (Double(total.components.seconds) + Double(total.components.attoseconds) * 1e-18), latencies: latencies)
    }

    static func report(_ name: String, _ m: Run, ratio: Double?) {
        let sorted = m.latencies.sorted()
        func pct(_ p: Double) -> String {
            guard !sorted.isEmpty else { return "-" }
            return String(format: "%.0f", sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1e6)
        }
        Swift.print(row([name, String(format: "%.0f", m.rate), pct(0.5), pct(0.99), pct(0.999), ratio.map { String(format: "%.2fx", $0) } ?? "-"]))
    }

    /// Bob's sealed store receives `messages` SignalMessages from Alice (in memory), each in one
    /// store transaction as the engine does.
    func receive(in dir: URL, name: String, messages: Int, scrubEach: Bool) throws -> Run {
        let (alice, bob, bobStore) = try Self.pair(in: dir, name: name)
        defer { try? bobStore.close() }
        let pending = try (0..<messages).map { i in
            try SessionCipher.encrypt(Array("message \(i)".utf8), for: bob, store: alice)
        }
        return try Self.timed(messages) { i in
            guard case .signal(let message) = pending[i] else { throw ValidationError("expected a SignalMessage") }
            _ = try bobStore.transaction { store in
                try SessionCipher.decrypt(message, from: ProtocolAddress(name: "alice", deviceId: 1), store: store)
            }
            if scrubEach { try bobStore.scrub() }
        }
    }

    /// First messages of new sessions: each uses (and deletes, then erases) a one-time prekey.
    func firstMessage(in dir: URL, count: Int) throws -> Run {
        let bobIdentity = try IdentityKeyPair.generate()
        let bobStore = try DeviceStore.create(
            at: dir.appendingPathComponent("first.sqlite").path, identity: bobIdentity, registrationId: 2,
            passphrase: Passphrase("bench"), cost: .interactive)
        defer { try? bobStore.close() }
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0)
        try bobStore.storeSignedPreKey(signed)
        var messages: [PreKeySignalMessage] = []
        for i in 0..<count {
            let oneTime = PreKeyRecord(id: UInt32(i + 1), keyPair: try PrivateKey.generate(using: SystemRandom.shared))
            try bobStore.storePreKey(oneTime)
            let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
            let bob = ProtocolAddress(name: "bob", deviceId: 1)
            try SessionBuilder.process(
                bundle: PreKeyBundle(
                    registrationId: 2, deviceId: 1, identityKey: bobIdentity.identityKey, signedPreKeyId: 1,
                    signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: oneTime.id,
                    preKey: oneTime.keyPair.publicKey),
                for: bob, store: alice)
            guard case .preKey(let message) = try SessionCipher.encrypt(Array("hello".utf8), for: bob, store: alice) else {
                throw ValidationError("expected a PreKeySignalMessage")
            }
            messages.append(message)
        }
        return try Self.timed(count) { i in
            _ = try bobStore.transaction { store in
                try SessionCipher.decrypt(messages[i], from: ProtocolAddress(name: "alice\(i)", deviceId: 1), store: store)
            }
        }
    }

    /// Alice (in memory) with a session to Bob, whose sealed store has answered once.
    static func pair(in dir: URL, name: String) throws -> (InMemoryProtocolStore, ProtocolAddress, DeviceStore) {
        let aliceAddress = ProtocolAddress(name: "alice", deviceId: 1)
        let bob = ProtocolAddress(name: "bob", deviceId: 1)
        let bobIdentity = try IdentityKeyPair.generate()
        let bobStore = try DeviceStore.create(
            at: dir.appendingPathComponent("\(name).sqlite").path, identity: bobIdentity, registrationId: 2,
            passphrase: Passphrase("bench"), cost: .interactive)
        let alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 1)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0)
        try bobStore.storeSignedPreKey(signed)
        try SessionBuilder.process(
            bundle: PreKeyBundle(
                registrationId: 2, deviceId: 1, identityKey: bobIdentity.identityKey, signedPreKeyId: 1,
                signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: nil, preKey: nil),
            for: bob, store: alice)
        // The first (prekey) message, then Bob's answer: after it Alice sends plain SignalMessages.
        guard case .preKey(let first) = try SessionCipher.encrypt(Array("hi".utf8), for: bob, store: alice) else {
            throw ValidationError("expected a PreKeySignalMessage")
        }
        _ = try SessionCipher.decrypt(first, from: aliceAddress, store: bobStore)
        guard case .signal(let answer) = try SessionCipher.encrypt(Array("hi".utf8), for: aliceAddress, store: bobStore) else {
            throw ValidationError("expected a SignalMessage")
        }
        _ = try SessionCipher.decrypt(answer, from: bob, store: alice)
        return (alice, bob, bobStore)
    }
}
