import ArgumentParser
import Foundation
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyWire

#if canImport(Glibc)
import Glibc
#endif

/// The relay under abuse (issue 9): slowloris connections, WebSockets that never read, ping floods, JSON bombs
/// and queue flooding, all at once against a relay child process at its default limits, while honest devices
/// exchange messages. Reports honest latency before, during and after the attack, acknowledged messages that
/// never arrived, the relay's RSS over time and what the relay refused.
struct RelayAbuse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-abuse",
        abstract: "Soak under abuse: slowloris, non-reading WebSockets, ping floods, JSON bombs and queue flooding at once, while honest devices exchange messages (open loop); honest latency, lost acknowledged messages, relay RSS and refusals.")

    @Option(help: "Use a running relay at this URL instead of starting one (then pass --relay-pid for RSS).") var server: String?
    @Option(help: "With --server: the relay's process id.") var relayPid: Int32?
    @Option(help: "With --server: the port of its metrics listener.") var relayMetricsPort: Int?
    @Option(help: "The parley-relay binary to start (default: next to this executable).") var relayBinary: String?
    @Option(help: "Seconds of attack.") var duration = 600
    @Option(help: "Seconds of honest traffic alone before the attack (baseline).") var baseline = 30
    @Option(help: "Seconds of honest traffic alone after the attack (RSS must come back).") var settle = 60
    @Option(help: "Honest devices (one account each); device i sends to device i+1 over its WebSocket.") var honestDevices = 200
    @Option(help: "Honest messages per second, all devices together (open loop).") var rate = 400
    @Option(help: "Honest ciphertext bytes per message.") var size = 200
    @Option(help: "Slowloris connections kept open (over all attacker processes).") var slowloris = 24_000
    @Option(help: "Attacker processes for the slowloris connections (each has its own open-file limit).") var slowlorisProcesses = 2
    @Option(help: "Loopback addresses the slowloris connections come from (127.0.0.10 on).") var slowlorisAddresses = 32
    @Option(help: "New slowloris connections per second at most (all processes; each lives 10 s at the relay's defaults).") var slowlorisRate = 2_500
    @Option(help: "WebSockets that never read.") var stalledReaders = 8
    @Option(help: "256 KiB messages per second sent (over HTTP) to the non-reading devices.") var stalledMessagesPerSecond = 4.0
    @Option(help: "WebSockets flooding pings without reading.") var pingFlooders = 4
    @Option(help: "Devices flooding queues over their WebSockets.") var queueFlooders = 16
    @Option(help: "Frames per second per flooding device.") var floodFramesPerSecond = 50
    @Option(help: "Concurrent JSON-bomb senders.") var jsonBombers = 8
    @Option(help: "Bytes of one JSON bomb (many small objects).") var jsonBombBytes = 8_283_750
    @Option(help: "The RSS bound to check (MiB).") var rssBoundMib = 1_536
    @Option(help: "Nice value of the attacker threads and processes (they yield the bench's CPU to the honest devices, whose latency is measured; 0: same priority).")
    var attackerNice: Int32 = 10
    @Option(help: "Write the per-second timeline (honest latency, relay CPU and RSS) to this file (tab-separated).")
    var timeline: String?

    func run() async throws {
        AbuseThread.nice = attackerNice
        let target: RelayTarget
        if let server {
            target = try RelayTarget.external(server, pid: relayPid, metricsPort: relayMetricsPort)
        } else {
            // Default limits, except registrations per address: the bench registers its ~250 accounts from one
            // address in the setup.
            target = try await RelayTarget.spawn(
                binary: relayBinary, extraFlags: ["--creations-per-minute-per-address", "100000000", "--log-level", "error"])
            print("relay: started \(target.flags.joined(separator: " "))")
        }
        defer { target.stop() }
        print("parley-bench relay-abuse: \(honestDevices) honest devices at \(rate) msg/s; attack for \(duration) s (baseline \(baseline) s before, \(settle) s after): \(slowloris) slowloris connections from \(slowlorisAddresses) addresses (at most \(slowlorisRate) new a second), \(stalledReaders) non-reading WebSockets (\(stalledMessagesPerSecond) x 256 KiB messages/s to them), \(pingFlooders) ping flooders, \(queueFlooders) queue flooders at \(floodFramesPerSecond) frames/s, \(jsonBombers) JSON bombers (\(jsonBombBytes) bytes each)")

        // Accounts.
        let single = RelayDeployment(nodes: [target])
        let prefix = runPrefix("x")
        let honest = try await BenchHTTP.shared.register(single, prefix: prefix + "h", count: honestDevices)
        let stalled = try await BenchHTTP.shared.register(single, prefix: prefix + "s", count: stalledReaders)
        let pingers = try await BenchHTTP.shared.register(single, prefix: prefix + "p", count: pingFlooders)
        let flooders = try await BenchHTTP.shared.register(single, prefix: prefix + "f", count: queueFlooders)
        let victims = try await BenchHTTP.shared.register(single, prefix: prefix + "v", count: 2)
        let bigSender = try await BenchHTTP.shared.register(single, prefix: prefix + "b", count: 1)
        print("setup: registered \(honest.count + stalled.count + pingers.count + flooders.count + victims.count + 1) accounts")

        // Honest devices: a ring on one event loop, open loop at `rate`; every acknowledged send is tracked.
        let group = benchEventLoops(1)
        let stats = makeLoopStats(group)
        try await onEveryLoop(group, stats) {
            $0.acknowledged = []
            $0.received = []
        }
        let payload = BenchPayload(size: size)
        let sockets = try await connectAll(honest, target: single, group: group, stats: stats, payload: payload)
        for (index, socket) in sockets.enumerated() {
            let peer = honest[(index + 1) % honest.count]
            try await socket.eventLoop.submit { socket.setPeer(account: peer.account, deviceId: peer.deviceId, registrationId: 4242) }.get()
        }
        print("setup: \(sockets.count) honest devices connected")

        // One latency histogram per second of the run (the timeline); phases and 10 s windows merge them.
        let second: UInt64 = 1_000_000_000
        let total = UInt64(baseline + duration + settle)
        let t0 = monotonicNanos() + 100_000_000
        let attackStart = t0 + UInt64(baseline) * second
        let attackEnd = attackStart + UInt64(duration) * second
        let end = t0 + total * second
        try await onEveryLoop(group, stats) {
            $0.recordFrom = t0
            $0.recordUntil = end
            $0.runLength = second
            $0.latencyRuns = (0..<Int(total)).map { _ in newHistogram() }
        }
        let loop = group.next()
        let scheduler = OpenLoopScheduler(sockets: sockets, start: t0, end: end, ratePerSecond: Double(rate))
        let ticker = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .microseconds(500)) { _ in scheduler.tick() }
        let sampler = RelaySampler(target: target, start: t0)

        // Baseline.
        try await Self.sleep(until: attackStart)
        let rssBaseline = target.residentBytes() ?? 0
        print(String(format: "baseline: relay RSS %.1f MiB", Double(rssBaseline) / 1_048_576))

        // The attack.
        let host = target.host
        let port = target.port
        var slowlorisChildren: [SlowlorisChild] = []
        let perProcess = (slowloris + slowlorisProcesses - 1) / max(1, slowlorisProcesses)
        for index in 0..<slowlorisProcesses where perProcess > 0 {
            let addresses = (0..<slowlorisAddresses).filter { $0 % slowlorisProcesses == index }.map { "127.0.0.\(10 + $0)" }
            slowlorisChildren.append(
                try SlowlorisChild(
                    host: host, port: port, addresses: addresses, count: perProcess, perSecond: slowlorisRate / max(1, slowlorisProcesses),
                    nice: attackerNice))
        }
        let stalledAttack = StalledReaderAttacker(
            host: host, port: port, authorizations: stalled.map(\.authorizationHeader), source: "127.0.0.2")
        let pingAttack = PingFloodAttacker(
            host: host, port: port, authorizations: pingers.map(\.authorizationHeader), source: "127.0.0.3")
        let floodAttack = QueueFloodAttacker(
            host: host, port: port, authorizations: flooders.map(\.authorizationHeader),
            victims: victims.map(\.account) + honest.map(\.account), framesPerSecond: floodFramesPerSecond, source: "127.0.0.4")
        let bombs = (0..<jsonBombers).map { JSONBombAttacker(host: host, port: port, bodyBytes: jsonBombBytes, source: "127.0.0.\(5 + $0 % 4)") }
        let bigMessages = Task { await Self.sendLarge(to: stalled, from: bigSender[0], target: target, perSecond: stalledMessagesPerSecond, until: attackEnd) }
        var minute = 1
        while monotonicNanos() < attackEnd {
            try await Self.sleep(until: min(attackEnd, attackStart + UInt64(minute) * 60_000_000_000))
            let metrics = await target.metrics()
            let slow = slowlorisChildren.reduce(0) { $0 + $1.open }
            let elapsed = Int((monotonicNanos() - attackStart) / 1_000_000_000)
            let rss = Double(target.residentBytes() ?? 0) / 1_048_576
            let rssMax = Double(sampler.max(from: attackStart, to: monotonicNanos())) / 1_048_576
            let files = target.openFiles().map(String.init) ?? "?"
            let tcp = Int(metrics["parley_relay_tcp_connections"] ?? -1)
            let sessions = Int(metrics["parley_relay_connections"] ?? -1)
            print("attack \(elapsed) s: relay RSS " + String(format: "%.1f MiB (max %.1f)", rss, rssMax)
                + ", open files \(files), tcp connections \(tcp), sessions \(sessions); slowloris open \(slow)")
            minute += 1
        }
        _ = await bigMessages.value
        for child in slowlorisChildren { child.stop() }
        await stalledAttack.stop()
        await pingAttack.stop()
        await floodAttack.stop()
        for bomb in bombs { await bomb.stop() }
        let stoppedAt = monotonicNanos()
        print("attack stopped")

        // Settle: honest traffic alone; the RSS must come back.
        try await Self.sleep(until: end)
        ticker.cancel()
        let rssAfter = target.residentBytes() ?? 0
        // Everything acknowledged must arrive: wait for stragglers, then compare.
        var lost: Set<UInt64> = []
        var acknowledged = 0
        var received = 0
        var refusedSends: [String: Int] = [:]
        let drainDeadline = monotonicNanos() + 30_000_000_000
        repeat {
            try await Task.sleep(for: .milliseconds(500))
            let (ack, got, refused) = try await loop.submit {
                let loopStats = stats[ObjectIdentifier(loop)]
                return (loopStats?.acknowledged ?? [], loopStats?.received ?? [], loopStats?.refusedSends ?? [:])
            }.get()
            lost = ack.subtracting(got)
            acknowledged = ack.count
            received = got.count
            refusedSends = refused
        } while !lost.isEmpty && monotonicNanos() < drainDeadline
        let metrics = await target.metrics()
        let snapshotAll = try await snapshot(group, stats)

        // Latency per phase, from the per-second histograms (by scheduled send time).
        let histograms = try await loop.submit { stats[ObjectIdentifier(loop)]?.latencyRuns ?? [] }.get()
        func merged(_ from: UInt64, _ to: UInt64) -> Histogram<UInt64> {
            var result = newHistogram()
            for (index, histogram) in histograms.enumerated() {
                let start = t0 + UInt64(index) * second
                if start >= from, start < to { result.add(histogram) }
            }
            return result
        }
        let baselineLatency = merged(t0, attackStart)
        let attackLatency = merged(attackStart, attackEnd)
        let settleLatency = merged(attackEnd, end)
        // The worst 10 s of the attack, sliding by a second.
        var worstWindow = (start: 0, p99: UInt64(0))
        for offset in 0..<max(1, duration - 9) {
            let from = attackStart + UInt64(offset) * second
            let window = merged(from, min(attackEnd, from + 10 * second))
            if window.totalCount > 0, window.valueAtPercentile(99) > worstWindow.p99 {
                worstWindow = (offset, window.valueAtPercentile(99))
            }
        }
        let seconds = histograms.enumerated().map { index, histogram in
            TimelineSecond(
                second: index - baseline, latency: histogram,
                cpu: sampler.cpuPercent(from: t0 + UInt64(index) * second, to: t0 + UInt64(index + 1) * second),
                rss: sampler.max(from: t0 + UInt64(index) * second, to: t0 + UInt64(index + 1) * second))
        }
        if let timeline {
            let text = "second\tsamples\tp50_ms\tp99_ms\tmax_ms\trelay_cpu_percent\trelay_rss_mib\n"
                + seconds.map(\.row).joined()
            try Data(text.utf8).write(to: URL(fileURLWithPath: timeline))
        }

        print("")
        print("honest latency, scheduled send -> recipient socket:")
        print("    baseline (\(baseline) s):      \(percentileLine(baselineLatency))")
        print("    under attack (\(duration) s):  \(percentileLine(attackLatency))")
        print("    after (\(settle) s):          \(percentileLine(settleLatency))")
        print(String(format: "    worst 10 s window of the attack: p99 %.2f ms (from %d s)", Double(worstWindow.p99) / 1000, worstWindow.start))
        let worstSeconds = seconds.filter { $0.latency.totalCount > 0 }.sorted { $0.latency.max > $1.latency.max }.prefix(10)
        print("    the 10 seconds with the slowest message (s from the attack's start: p99 / max ms, relay CPU %): "
            + worstSeconds.sorted { $0.second < $1.second }.map(\.summary).joined(separator: "; ")
            + (timeline.map { " (timeline: \($0))" } ?? ""))
        print("honest messages: scheduled \(scheduler.sent), acknowledged \(acknowledged), received \(received), acknowledged but not received \(lost.count)"
            + (refusedSends.isEmpty ? "" : ", refused: " + refusedSends.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            + ", honest devices' envelopes (flood included) \(snapshotAll.envelopes)")
        let rssMax = sampler.max(from: attackStart, to: stoppedAt)
        print(String(format: "relay RSS: baseline %.1f MiB, max under attack %.1f MiB, %d s after the attack %.1f MiB (bound %d MiB)",
            Double(rssBaseline) / 1_048_576, Double(rssMax) / 1_048_576, settle, Double(rssAfter) / 1_048_576, rssBoundMib))
        print("relay RSS over time (max per minute, MiB): " + sampler.perMinute().map { String(format: "%.0f", Double($0) / 1_048_576) }.joined(separator: " "))
        print("attackers:")
        for (index, child) in slowlorisChildren.enumerated() { print("    slowloris process \(index + 1): \(child.line)") }
        print("    non-reading WebSockets: \(stalledAttack.counters.line)")
        print("    ping flooders: \(pingAttack.counters.line)")
        print("    queue flooders: \(floodAttack.counters.line)")
        let bombCounters = AbuseCounters()
        for bomb in bombs { for (name, value) in bomb.counters.snapshot { bombCounters.add(name, value) } }
        print("    JSON bombs: \(bombCounters.line)")
        print("    256 KiB messages to the non-reading devices: \(await Self.largeCounters.line)")
        print("relay refusals and deadlines (metrics):")
        for (name, value) in metrics.sorted(by: { $0.key < $1.key })
        where ["refused", "evicted", "timed_out", "folds", "drops", "limited", "rejected", "bad_frames", "wal_"].contains(where: { name.contains($0) }) {
            print("    \(name) \(Int(value))")
        }

        let p99 = Double(attackLatency.valueAtPercentile(99)) / 1000
        print("")
        print(String(format: "targets: honest p99 under attack < 50 ms: %.2f ms (", p99) + (p99 < 50 ? "met" : "missed")
            + "); nothing acknowledged lost: \(lost.count) (" + (lost.isEmpty ? "met" : "missed")
            + String(format: "); RSS under %d MiB: max %.0f MiB (", rssBoundMib, Double(rssMax) / 1_048_576)
            + (rssMax <= rssBoundMib * 1_048_576 ? "met" : "missed")
            + String(format: "); RSS after the attack %.0f MiB vs baseline %.0f MiB", Double(rssAfter) / 1_048_576, Double(rssBaseline) / 1_048_576))
        for socket in sockets { socket.eventLoop.execute { socket.close() } }
        sampler.stop()
    }

    static func sleep(until deadline: UInt64) async throws {
        let now = monotonicNanos()
        if deadline > now { try await Task.sleep(for: .nanoseconds(Int64(deadline - now))) }
    }

    static let largeCounters = AbuseCounters()

    /// Maximum-size messages to the non-reading devices over HTTP, round robin, at `perSecond`.
    static func sendLarge(
        to devices: [DeviceCredentials], from sender: DeviceCredentials, target: RelayTarget, perSecond: Double, until end: UInt64
    ) async {
        guard perSecond > 0, !devices.isEmpty else { return }
        let content = Data(count: 256 * 1024)
        var index = 0
        let start = monotonicNanos()
        while monotonicNanos() < end {
            let due = start + UInt64(Double(index) / perSecond * 1e9)
            if due > monotonicNanos() { try? await Task.sleep(for: .nanoseconds(Int64(due - monotonicNanos()))) }
            let device = devices[index % devices.count]
            index += 1
            let body = SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 4242, type: 1, content: content)])
            do {
                _ = try await BenchHTTP.shared.json(
                    .PUT, target.baseURL + "/v1/messages/\(device.account)", body: body, authorization: sender.authorizationHeader,
                    expect: SendMessageResponse.self)
                largeCounters.add("stored")
            } catch {
                largeCounters.add("refused")
            }
        }
    }
}

/// The relay's RSS and CPU time every second, kept for the report.
final class RelaySampler: Sendable {
    private struct Sample {
        let at: UInt64
        let bytes: Int
        let cpuSeconds: Double?
    }

    private let samples = NIOLockedValueBox<[Sample]>([])
    private let task: Task<Void, Never>
    private let start: UInt64

    init(target: RelayTarget, start: UInt64) {
        self.start = start
        let samples = self.samples
        task = Task {
            while !Task.isCancelled {
                if let bytes = target.residentBytes() {
                    let sample = Sample(at: monotonicNanos(), bytes: bytes, cpuSeconds: target.cpuSeconds())
                    samples.withLockedValue { $0.append(sample) }
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func max(from: UInt64, to: UInt64) -> Int {
        samples.withLockedValue { samples in samples.filter { $0.at >= from && $0.at <= to }.map(\.bytes).max() ?? 0 }
    }

    /// The relay's CPU use (percent of one core) between the last sample before `from` and the first after `to`.
    func cpuPercent(from: UInt64, to: UInt64) -> Double? {
        samples.withLockedValue { samples in
            guard let first = samples.last(where: { $0.at <= from && $0.cpuSeconds != nil }),
                let last = samples.first(where: { $0.at >= to && $0.cpuSeconds != nil }),
                let begin = first.cpuSeconds, let finish = last.cpuSeconds, last.at > first.at
            else { return nil }
            return (finish - begin) / (Double(last.at - first.at) / 1e9) * 100
        }
    }

    /// The largest sample of each minute since `start`.
    func perMinute() -> [Int] {
        samples.withLockedValue { samples in
            var result: [Int] = []
            for sample in samples where sample.at >= start {
                let minute = Int((sample.at - start) / 60_000_000_000)
                while result.count <= minute { result.append(0) }
                result[minute] = Swift.max(result[minute], sample.bytes)
            }
            return result
        }
    }

    func stop() {
        task.cancel()
    }
}

/// One second of the run: the honest messages scheduled in it, the relay's CPU and RSS.
struct TimelineSecond {
    /// Seconds from the attack's start (negative in the baseline).
    let second: Int
    let latency: Histogram<UInt64>
    let cpu: Double?
    let rss: Int

    private func ms(_ value: UInt64) -> String { String(format: "%.2f", Double(value) / 1000) }

    var row: String {
        let count = latency.totalCount
        return "\(second)\t\(count)\t\(count > 0 ? ms(latency.valueAtPercentile(50)) : "")\t"
            + "\(count > 0 ? ms(latency.valueAtPercentile(99)) : "")\t\(count > 0 ? ms(latency.max) : "")\t"
            + "\(cpu.map { String(format: "%.0f", $0) } ?? "")\t\(String(format: "%.1f", Double(rss) / 1_048_576))\n"
    }

    var summary: String {
        "\(second) s: \(ms(latency.valueAtPercentile(99))) / \(ms(latency.max))" + (cpu.map { String(format: ", %.0f%%", $0) } ?? "")
    }
}

/// A `relay-abuse-slowloris` child process (its own open-file limit), reporting its counters on stdout.
final class SlowlorisChild: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()
    private var lastLine = ""

    init(host: String, port: Int, addresses: [String], count: Int, perSecond: Int, nice: Int32) throws {
        process.executableURL = URL(fileURLWithPath: ownExecutablePath())
        process.arguments = [
            "relay-abuse-slowloris", "--host", host, "--port", String(port), "--count", String(count),
            "--per-second", String(perSecond), "--addresses", addresses.joined(separator: ","), "--nice", String(nice),
        ]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let handle = output.fileHandleForReading
        Thread { [self] in
            while true {
                let line = readLine(from: handle)
                if line.isEmpty {
                    if !process.isRunning { break }
                    usleep(100_000)
                    continue
                }
                lock.withLock { lastLine = line }
            }
        }.start()
    }

    var line: String {
        lock.withLock { lastLine }
    }

    /// Open connections, from the last report.
    var open: Int {
        for part in line.split(separator: ",") {
            let fields = part.split(separator: " ")
            if fields.count == 2, fields[0] == "open", let value = Int(fields[1]) { return value }
        }
        return 0
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// Hidden: one slowloris process of `relay-abuse`. Prints its counters every 2 s (and when it stops), until its
/// standard input closes.
struct RelayAbuseSlowloris: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "relay-abuse-slowloris", shouldDisplay: false)

    @Option var host: String
    @Option var port: Int
    @Option var count: Int
    @Option var perSecond: Int
    @Option var addresses: String
    @Option var nice: Int32 = 10

    func run() async throws {
        AbuseThread.nice = nice
        let attacker = SlowlorisAttacker(
            host: host, port: port, addresses: addresses.split(separator: ",").map(String.init), count: count, perSecond: perSecond)
        let reporter = Task {
            while !Task.isCancelled {
                FileHandle.standardOutput.write(Data("\(attacker.counters.line)\n".utf8))
                try? await Task.sleep(for: .seconds(2))
            }
        }
        _ = await Task.detached { FileHandle.standardInput.readDataToEndOfFile() }.value
        reporter.cancel()
        await attacker.stop()
        FileHandle.standardOutput.write(Data("\(attacker.counters.line)\n".utf8))
    }
}
