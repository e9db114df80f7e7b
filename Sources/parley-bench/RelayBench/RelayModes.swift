import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import ParleyWire

/// Where the relay comes from, and the load generator's own resources. Shared by the relay modes.
struct RelayOptions: ParsableArguments {
    @Option(help: "Use a running relay at this URL (e.g. http://127.0.0.1:8080) instead of starting one.") var server: String?
    @Option(help: "Use running relay nodes of one deployment (comma-separated URLs); devices are spread over them.")
    var nodes: String?
    @Option(help: "With --server: the relay's process id, for its CPU and memory figures (with --nodes: one per node, comma-separated).")
    var relayPid: String?
    @Option(help: "With --server: the port of the relay's metrics listener (loopback; with --nodes: one per node, comma-separated).")
    var relayMetricsPort: String?
    @Option(help: "The parley-relay binary to start (default: next to this executable).") var relayBinary: String?
    @Option(help: "Database of the relays the bench starts: a postgres:// URL (a fresh schema per run is added), default a temporary SQLite file.")
    var database: String?
    @Option(help: "Relay nodes to start on --database (a postgres:// URL for more than one).") var nodeCount = 1
    @Option(help: "Event-loop threads of the load generator.") var clientThreads = 1
    @Option(help: "Ciphertext bytes per message.") var size = 200

    func start(maxGroupMembers: Int = 500) async throws -> RelayDeployment {
        let pids = (relayPid ?? "").split(separator: ",").map { Int32($0) }
        let metricsPorts = (relayMetricsPort ?? "").split(separator: ",").map { Int($0) }
        if let nodes {
            let urls = nodes.split(separator: ",").map(String.init)
            return RelayDeployment(nodes: try urls.enumerated().map { index, url in
                try RelayTarget.external(
                    url, pid: index < pids.count ? pids[index] : nil,
                    metricsPort: index < metricsPorts.count ? metricsPorts[index] : nil)
            })
        }
        if let server { return RelayDeployment(nodes: [try RelayTarget.external(
                server, pid: pids.first ?? nil, metricsPort: metricsPorts.first ?? nil)]) }
        guard nodeCount >= 1 else { throw BenchError.relay("--node-count must be at least 1") }
        var database = self.database
        let postgres = database?.hasPrefix("postgres") ?? false
        guard nodeCount == 1 || postgres else {
            throw BenchError.relay("--node-count > 1 needs --database postgres://... (nodes share one PostgreSQL database)")
        }
        if postgres, let url = database, !url.contains("schema=") {
            let letters = Array("abcdefghijklmnopqrstuvwxyz")
            database = url + (url.contains("?") ? "&" : "?") + "schema=bench_" + String((0..<8).map { _ in letters.randomElement() ?? "x" })
        }
        var started: [RelayTarget] = []
        for _ in 0..<nodeCount {
            do {
                let target = try await RelayTarget.spawn(
                    binary: relayBinary, extraFlags: RelayTarget.benchFlags(maxGroupMembers: maxGroupMembers), database: database)
                print("relay: started \(target.flags.joined(separator: " "))")
                started.append(target)
            } catch {
                for target in started { target.stop() }
                throw error
            }
        }
        return RelayDeployment(nodes: started)
    }
}

/// A random account-name prefix, so that runs against one `--server` do not collide.
func runPrefix(_ mode: String) -> String {
    let letters = Array("abcdefghijklmnopqrstuvwxyz")
    return mode + String((0..<5).map { _ in letters.randomElement() ?? "x" }) + "-"
}

func seconds(_ nanos: UInt64) -> Double { Double(nanos) / 1e9 }

func formatRate(_ value: Double) -> String { String(format: "%.0f", value) }

/// `p50 / p90 / p99 / p99.9 / max` of a histogram of microseconds, in milliseconds.
func percentileLine(_ histogram: Histogram<UInt64>) -> String {
    guard histogram.totalCount > 0 else { return "no samples" }
    func ms(_ percentile: Double) -> String { String(format: "%.2f", Double(histogram.valueAtPercentile(percentile)) / 1000) }
    return "p50 \(ms(50)) / p90 \(ms(90)) / p99 \(ms(99)) / p99.9 \(ms(99.9)) / max "
        + String(format: "%.2f", Double(histogram.max) / 1000) + " ms (\(histogram.totalCount) samples)"
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// Per-loop socket lists, for work that runs on each loop.
func socketsByLoop(_ sockets: [BenchSocket]) -> [ObjectIdentifier: [BenchSocket]] {
    var result: [ObjectIdentifier: [BenchSocket]] = [:]
    for socket in sockets { result[ObjectIdentifier(socket.eventLoop), default: []].append(socket) }
    return result
}

// MARK: - throughput

struct RelayThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-throughput",
        abstract: "Sustained 1:1 throughput: N connected devices send over their WebSockets (closed loop), each message committed durably before its sendResult, delivered to the recipient's socket and acked.")

    @OptionGroup var relay: RelayOptions
    @Option(help: "Connected devices (one account each); device i sends to device i+1.") var devices = 1_000
    @Option(help: "Sends in flight per device.") var window = 8
    @Option(help: "Seconds per measured run.") var duration = 10
    @Option(help: "Measured runs (median reported).") var runs = 3
    @Option(help: "Warm-up seconds before the first run.") var warmup = 3

    func run() async throws {
        let target = try await relay.start()
        defer { target.stop() }
        let group = benchEventLoops(relay.clientThreads)
        let payload = BenchPayload(size: relay.size)
        print("parley-bench relay-throughput: \(devices) devices, \(relay.size)-byte payloads, \(window) sends in flight per device, \(runs) runs of \(duration) s, load generator: \(relay.clientThreads) event loop(s)")

        var clock = monotonicNanos()
        let credentials = try await BenchHTTP.shared.register(target, prefix: runPrefix("t"), count: devices)
        print(String(format: "setup: registered %d accounts in %.1f s", credentials.count, seconds(monotonicNanos() - clock)))
        clock = monotonicNanos()
        let stats = makeLoopStats(group)
        let sockets = try await connectAll(credentials, target: target, group: group, stats: stats, payload: payload)
        print(String(format: "setup: connected %d WebSockets in %.1f s", sockets.count, seconds(monotonicNanos() - clock)))
        for (index, socket) in sockets.enumerated() {
            let peer = credentials[(index + 1) % credentials.count]
            try await socket.eventLoop.submit {
                socket.setPeer(account: peer.account, deviceId: peer.deviceId, registrationId: 4242)
                socket.onAnswer = { socket in
                    if socket.stats.running { socket.send(scheduled: monotonicNanos()) }
                }
            }.get()
        }
        let window = self.window
        try await onEveryLoop(group, stats) { $0.running = true }
        for (_, loopSockets) in socketsByLoop(sockets) {
            guard let loop = loopSockets.first?.eventLoop else { continue }
            try await loop.submit {
                for socket in loopSockets {
                    for _ in 0..<window { socket.send(scheduled: monotonicNanos(), flush: false) }
                    socket.flush()
                }
            }.get()
        }
        try await Task.sleep(for: .seconds(warmup))

        var committedRates: [Double] = []
        var deliveredRates: [Double] = []
        var relayCPU: [Double] = []
        for run in 1...runs {
            try await onEveryLoop(group, stats) { $0.latency.reset(); $0.commitLatency.reset(); $0.recordFrom = 0; $0.recordUntil = .max }
            let before = try await snapshot(group, stats)
            let cpuBefore = target.cpuSeconds()
            let benchCPUBefore = processCPUSeconds(getpid())
            let start = monotonicNanos()
            try await Task.sleep(for: .seconds(duration))
            let after = try await snapshot(group, stats)
            let elapsed = seconds(monotonicNanos() - start)
            let delta = after - before
            let committed = Double(delta.committed) / elapsed
            let delivered = Double(delta.delivered) / elapsed
            committedRates.append(committed)
            deliveredRates.append(delivered)
            var cpuText = ""
            if let cpuBefore, let cpuAfter = target.cpuSeconds() {
                relayCPU.append((cpuAfter - cpuBefore) / elapsed)
                cpuText += String(format: ", relay CPU %.0f%%", (cpuAfter - cpuBefore) / elapsed * 100)
            }
            if let benchCPUBefore, let benchCPUAfter = processCPUSeconds(getpid()) {
                cpuText += String(format: ", load generator CPU %.0f%%", (benchCPUAfter - benchCPUBefore) / elapsed * 100)
            }
            let latency = try await mergedLatency(group, stats)
            let commitLatency = try await mergedLatency(group, stats, commit: true)
            print("run \(run): committed (sendResult) \(formatRate(committed)) msg/s, delivered \(formatRate(delivered)) msg/s, acked \(formatRate(Double(delta.ackedIds) / elapsed)) ids/s in \(formatRate(Double(delta.ackFrames) / elapsed)) ack frames/s, errors \(delta.errors)\(cpuText)")
            print("    send -> sendResult (durable): \(percentileLine(commitLatency))")
            print("    send -> recipient socket:     \(percentileLine(latency))")
        }

        // Stop, let everything in flight arrive, then check the relay's own counters.
        try await onEveryLoop(group, stats) { $0.running = false }
        let drainDeadline = monotonicNanos() + 20_000_000_000
        var final = try await snapshot(group, stats)
        while monotonicNanos() < drainDeadline {
            final = try await snapshot(group, stats)
            if final.committed + final.errors >= final.sent, final.delivered >= final.committed { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(500))
        final = try await snapshot(group, stats)
        let metrics = await target.metrics()
        print("totals: sent \(final.sent), committed \(final.committed), delivered \(final.delivered), acked ids \(final.ackedIds), errors \(final.errors)")
        if let firstError = final.firstError { print("first error frame: \(firstError)") }
        if !metrics.isEmpty {
            print("relay counters: messages_in \(Int(metrics["parley_relay_messages_in_total"] ?? -1)), messages_out \(Int(metrics["parley_relay_messages_out_total"] ?? -1)), acks \(Int(metrics["parley_relay_acks_total"] ?? -1))")
        }
        let rate = min(median(committedRates), median(deliveredRates))
        print("")
        print("median of \(runs) runs: committed \(formatRate(median(committedRates))) msg/s, delivered \(formatRate(median(deliveredRates))) msg/s"
            + (relayCPU.isEmpty ? "" : String(format: ", relay CPU %.0f%% of one core", median(relayCPU) * 100)))
        print(String(format: "target 25000 msg/s stored durably and delivered: %.2fx", rate / 25_000))
        for socket in sockets { socket.eventLoop.execute { socket.close() } }
    }
}

// MARK: - latency (open loop)

struct RelayLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-latency",
        abstract: "Latency at a fixed offered rate, open loop: sends are scheduled at the rate and latency is measured from the scheduled send time to delivery at the recipient socket (no coordinated omission).")

    @OptionGroup var relay: RelayOptions
    @Option(help: "Connected devices (one account each); device i sends to device i+1.") var devices = 1_000
    @Option(help: "Offered rate, messages per second (all devices together).") var rate = 5_000
    @Option(help: "Seconds per measured run.") var duration = 10
    @Option(help: "Measured runs (each reported; median p99 summarised).") var runs = 3
    @Option(help: "Warm-up seconds before the first run (sent at the rate, not recorded).") var warmup = 2

    func run() async throws {
        let target = try await relay.start()
        defer { target.stop() }
        let group = benchEventLoops(relay.clientThreads)
        let payload = BenchPayload(size: relay.size)
        print("parley-bench relay-latency: \(devices) devices, \(relay.size)-byte payloads, offered \(rate) msg/s open loop, \(runs) runs of \(duration) s after \(warmup) s warm-up, load generator: \(relay.clientThreads) event loop(s)")
        let credentials = try await BenchHTTP.shared.register(target, prefix: runPrefix("l"), count: devices)
        let stats = makeLoopStats(group)
        let sockets = try await connectAll(credentials, target: target, group: group, stats: stats, payload: payload)
        print("setup: \(sockets.count) devices connected")
        for (index, socket) in sockets.enumerated() {
            let peer = credentials[(index + 1) % credentials.count]
            try await socket.eventLoop.submit { socket.setPeer(account: peer.account, deviceId: peer.deviceId, registrationId: 4242) }.get()
        }

        let loopsWithSockets = socketsByLoop(sockets)
        let perLoopRate = Double(rate) / Double(loopsWithSockets.count)
        let totalSeconds = warmup + duration * runs
        let t0 = monotonicNanos() + 50_000_000
        let end = t0 + UInt64(totalSeconds) * 1_000_000_000
        let recordStart = t0 + UInt64(warmup) * 1_000_000_000
        let runs = self.runs
        let runLength = UInt64(duration) * 1_000_000_000
        try await onEveryLoop(group, stats) {
            $0.recordFrom = recordStart
            $0.recordUntil = recordStart + UInt64(runs) * runLength
            $0.runLength = runLength
            $0.latencyRuns = (0..<runs).map { _ in newHistogram() }
        }
        var schedulers: [RepeatedTask] = []
        for (_, loopSockets) in loopsWithSockets {
            guard let loop = loopSockets.first?.eventLoop else { continue }
            let scheduler = OpenLoopScheduler(sockets: loopSockets, start: t0, end: end, ratePerSecond: perLoopRate)
            schedulers.append(loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .microseconds(500)) { _ in scheduler.tick() })
        }

        var p99s: [Double] = []
        try await Task.sleep(for: .nanoseconds(Int64(recordStart - monotonicNanos())))
        for run in 1...runs {
            let runStart = recordStart + UInt64(run - 1) * UInt64(duration) * 1_000_000_000
            let runEnd = runStart + UInt64(duration) * 1_000_000_000
            let before = try await snapshot(group, stats)
            let cpuBefore = target.cpuSeconds()
            // Wait for the run's window, then up to 5 s more for its last messages.
            if runEnd > monotonicNanos() { try await Task.sleep(for: .nanoseconds(Int64(runEnd - monotonicNanos()))) }
            let cpuAfter = target.cpuSeconds()
            let expected = UInt64(Double(rate) * Double(duration))
            let waitDeadline = runEnd + 5_000_000_000
            var latency = try await mergedLatency(group, stats, run: run - 1)
            while latency.totalCount < expected, monotonicNanos() < waitDeadline {
                try await Task.sleep(for: .milliseconds(100))
                latency = try await mergedLatency(group, stats, run: run - 1)
            }
            let after = try await snapshot(group, stats)
            let missing = expected > latency.totalCount ? expected - latency.totalCount : 0
            // Not delivered by the deadline: recorded as the wait (>= 5 s), not left out.
            if missing > 0 { _ = latency.record(5_000_000, count: missing) }
            var cpuText = ""
            if let cpuBefore, let cpuAfter { cpuText = String(format: ", relay CPU %.0f%%", (cpuAfter - cpuBefore) / Double(duration) * 100) }
            print("run \(run): scheduled \(expected), delivered in window \(latency.totalCount)" + (missing > 0 ? " (\(missing) not delivered within 5 s: recorded as 5 s)" : "")
                + ", errors \((after - before).errors)\(cpuText)")
            print("    scheduled send -> recipient socket: \(percentileLine(latency))")
            let p99 = Double(latency.valueAtPercentile(99)) / 1000
            p99s.append(p99)
        }
        for scheduler in schedulers { scheduler.cancel() }
        let medianP99 = median(p99s)
        print("")
        print(String(format: "median p99 of %d runs: %.2f ms at %d msg/s offered; target p99 < 50 ms: ", runs, medianP99, rate)
            + (medianP99 < 50 ? "met" : "missed") + String(format: " (target/p99 = %.2fx)", 50 / medianP99))
        for socket in sockets { socket.eventLoop.execute { socket.close() } }
    }
}

/// Sends at a fixed rate from the sockets of one loop, round robin; each message carries its scheduled time.
final class OpenLoopScheduler: @unchecked Sendable {
    let sockets: [BenchSocket]
    let start: UInt64
    let end: UInt64
    let intervalNanos: Double
    var sent: UInt64 = 0

    init(sockets: [BenchSocket], start: UInt64, end: UInt64, ratePerSecond: Double) {
        self.sockets = sockets
        self.start = start
        self.end = end
        self.intervalNanos = 1e9 / ratePerSecond
    }

    func tick() {
        let now = min(monotonicNanos(), end)
        guard now > start else { return }
        let due = UInt64(Double(now - start) / intervalNanos)
        var touched: [Int] = []
        while sent < due {
            let index = Int(sent % UInt64(sockets.count))
            sockets[index].send(scheduled: start + UInt64(Double(sent) * intervalNanos), flush: false)
            touched.append(index)
            sent += 1
        }
        for index in touched { sockets[index].flush() }
    }
}

// MARK: - group fan-out

struct RelayFanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-fanout",
        abstract: "Group fan-out latency: members of one group are connected; group messages are sent (PUT /v1/groups/{id}/messages) at a fixed rate, open loop; latency from the scheduled send time to each member's socket, and until the last member has it.")

    @OptionGroup var relay: RelayOptions
    @Option(help: "Group members (accounts, one connected device each), creator included.") var members = 500
    @Option(help: "Group messages per second (open loop; senders rotate over the members).") var rate = 10
    @Option(help: "Seconds of measured sending.") var duration = 20
    @Option(help: "Warm-up seconds (sent at the rate, not recorded).") var warmup = 2

    func run() async throws {
        let target = try await relay.start(maxGroupMembers: max(members, 2))
        defer { target.stop() }
        let group = benchEventLoops(relay.clientThreads)
        let payload = BenchPayload(size: relay.size)
        print("parley-bench relay-fanout: \(members) members, \(relay.size)-byte payloads, \(rate) group messages/s open loop (\(rate * (members - 1)) deliveries/s) for \(duration) s after \(warmup) s warm-up")
        let credentials = try await BenchHTTP.shared.register(target, prefix: runPrefix("g"), count: members)
        let stats = makeLoopStats(group)
        try await onEveryLoop(group, stats) { $0.perMessage = [:] }
        let sockets = try await connectAll(credentials, target: target, group: group, stats: stats, payload: payload)
        print("setup: \(sockets.count) members connected")
        let info = try await BenchHTTP.shared.json(
            .POST, target.baseURL + "/v1/groups", body: CreateGroupRequest(members: credentials.dropFirst().map(\.account)),
            authorization: credentials[0].authorizationHeader, expect: GroupInfo.self)
        print("setup: group of \(info.members.count) members created")
        try await Task.sleep(for: .seconds(1))

        let total = (warmup + duration) * rate
        let t0 = monotonicNanos() + 100_000_000
        let interval = 1_000_000_000 / UInt64(rate)
        let recordStart = t0 + UInt64(warmup) * 1_000_000_000
        let recordEnd = recordStart + UInt64(duration) * 1_000_000_000
        try await onEveryLoop(group, stats) { $0.recordFrom = recordStart; $0.recordUntil = recordEnd }
        let path = "/v1/groups/\(info.groupId.uuidString)/messages"
        let failures = ErrorCounter()
        let cpuBefore = target.cpuSeconds()
        await withTaskGroup(of: Void.self) { tasks in
            for k in 0..<total {
                let scheduled = t0 + UInt64(k) * interval
                let now = monotonicNanos()
                if scheduled > now { try? await Task.sleep(for: .nanoseconds(Int64(scheduled - now))) }
                let sender = credentials[k % credentials.count]
                let body = SendGroupMessageRequest(type: 1, content: payload.bytes(scheduled: scheduled), clientTimestamp: nil)
                let url = target.node(k).baseURL + path
                tasks.addTask {
                    do {
                        _ = try await BenchHTTP.shared.json(.PUT, url, body: body, authorization: sender.authorizationHeader, expect: SendMessageResponse.self)
                    } catch {
                        await failures.add("\(error)")
                    }
                }
            }
        }
        let cpuAfter = target.cpuSeconds()
        let measuredMessages = duration * rate
        let expected = UInt64(measuredMessages * (members - 1))
        let deadline = monotonicNanos() + 10_000_000_000
        var latency = try await mergedLatency(group, stats)
        while latency.totalCount < expected, monotonicNanos() < deadline {
            try await Task.sleep(for: .milliseconds(100))
            latency = try await mergedLatency(group, stats)
        }
        // Per message: the latest arrival over all members.
        var perMessage: [UInt64: (count: Int, latest: UInt64)] = [:]
        for loop in group.makeIterator() {
            guard let loopStats = stats[ObjectIdentifier(loop)] else { continue }
            let part = try await loop.submit { loopStats.perMessage ?? [:] }.get()
            for (scheduled, entry) in part {
                let current = perMessage[scheduled] ?? (0, 0)
                perMessage[scheduled] = (current.count + entry.count, max(current.latest, entry.latest))
            }
        }
        var reachAll = newHistogram()
        var incomplete = 0
        for (scheduled, entry) in perMessage {
            if entry.count >= members - 1 { _ = reachAll.record((entry.latest - scheduled) / 1_000) } else { incomplete += 1 }
        }
        incomplete += max(0, measuredMessages - perMessage.count)
        let failureCount = await failures.count
        print("sent \(total) group messages (\(measuredMessages) measured), HTTP failures \(failureCount)" + (await failures.first.map { ": \($0)" } ?? ""))
        if let cpuBefore, let cpuAfter {
            print(String(format: "relay CPU during sending: %.0f%% of one core", (cpuAfter - cpuBefore) / Double(warmup + duration) * 100))
        }
        print("deliveries: expected \(expected), recorded \(latency.totalCount)")
        print("scheduled send -> each member's socket:      \(percentileLine(latency))")
        print("scheduled send -> the last of \(members - 1) members:  \(percentileLine(reachAll))" + (incomplete > 0 ? " (\(incomplete) messages did not reach every member)" : ""))
        let p99 = Double(reachAll.valueAtPercentile(99)) / 1000
        print("")
        print(String(format: "target: every online member within 200 ms at p99: p99 (last member) %.2f ms: ", p99)
            + (p99 < 200 && incomplete == 0 ? "met" : "missed") + String(format: " (target/p99 = %.2fx)", 200 / p99))
        for socket in sockets { socket.eventLoop.execute { socket.close() } }
    }
}

actor ErrorCounter {
    private(set) var count = 0
    private(set) var first: String?
    func add(_ text: String) {
        count += 1
        if first == nil { first = text }
    }
}

// MARK: - idle connections

struct RelayIdle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-idle",
        abstract: "Idle connection capacity: authenticated WebSockets held open by several client processes; relay memory per connection from /proc/PID/status (VmRSS before and after).")

    @OptionGroup var relay: RelayOptions
    @Option(help: "Idle connections in total.") var connections = 19_000
    @Option(help: "Client processes (each opens connections/processes; each is limited to the per-process file limit).") var processes = 4
    @Option(help: "Seconds to hold the connections before measuring.") var settle = 5

    func run() async throws {
        let target = try await relay.start()
        defer { target.stop() }
        print("parley-bench relay-idle: \(connections) idle authenticated WebSockets from \(processes) client processes")
        var clock = monotonicNanos()
        let credentials = try await BenchHTTP.shared.register(target, prefix: runPrefix("i"), count: connections, concurrency: 64)
        print(String(format: "setup: registered %d accounts in %.1f s", credentials.count, seconds(monotonicNanos() - clock)))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("parley-bench-idle-\(UUID().uuidString).txt")
        let lines = credentials.map { "\($0.authorizationHeader)\n" }.joined()
        try Data(lines.utf8).write(to: file, options: [.atomic])
        defer { try? FileManager.default.removeItem(at: file) }
        try await Task.sleep(for: .seconds(2))
        let rssBefore = target.residentBytes()
        let fdsBefore = target.openFiles()

        clock = monotonicNanos()
        var children: [(Process, Pipe, Pipe)] = []
        let perProcess = (credentials.count + processes - 1) / processes
        for index in 0..<processes {
            let first = index * perProcess
            let count = min(perProcess, credentials.count - first)
            guard count > 0 else { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ownExecutablePath())
            process.arguments = [
                "relay-idle-client", "--host", target.node(index).host, "--port", String(target.node(index).port), "--credentials", file.path,
                "--first", String(first), "--count", String(count),
            ]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            children.append((process, input, output))
        }
        var connected = 0
        var failed = 0
        for (_, _, output) in children {
            let line = await Task.detached { readLine(from: output.fileHandleForReading) }.value
            let parts = line.split(separator: " ")
            if parts.count == 3, parts[0] == "READY", let ok = Int(parts[1]), let bad = Int(parts[2]) {
                connected += ok
                failed += bad
            } else {
                print("client process: \(line)")
            }
        }
        print(String(format: "setup: %d connections open (%d failed) in %.1f s", connected, failed, seconds(monotonicNanos() - clock)))
        try await Task.sleep(for: .seconds(settle))
        let rssAfter = target.residentBytes()
        let fdsAfter = target.openFiles()
        let metrics = await target.metrics()
        let relayConnections = Int(metrics["parley_relay_connections"] ?? -1)
        print("relay: parley_relay_connections \(relayConnections), open files \(fdsBefore.map(String.init) ?? "?") -> \(fdsAfter.map(String.init) ?? "?")")
        if let rssBefore, let rssAfter {
            let perConnection = Double(rssAfter - rssBefore) / Double(max(connected, 1))
            print(String(format: "relay RSS: %.1f MiB before, %.1f MiB with the connections: %.1f KB per connection", Double(rssBefore) / 1_048_576, Double(rssAfter) / 1_048_576, perConnection / 1000))
            print("")
            print(String(format: "targets: >= 19000 connections: %d (%.2fx); <= 40 KB relay memory each: %.1f KB ",
                connected, Double(connected) / 19_000, perConnection / 1000) + (perConnection <= 40_000 ? "(met)" : "(missed)"))
        } else {
            print("relay RSS unknown (pass --relay-pid with --server)")
        }
        for (process, input, _) in children {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }
}

/// Reads one line (up to a newline or end of file) from a pipe.
func readLine(from handle: FileHandle) -> String {
    var bytes: [UInt8] = []
    while true {
        let chunk = handle.readData(ofLength: 1)
        guard let byte = chunk.first else { break }
        if byte == 0x0A { break }
        bytes.append(byte)
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Hidden: one client process of `relay-idle`. Opens its share of the connections, prints `READY ok failed`,
/// keeps them open (answering pings) until its standard input closes.
struct RelayIdleClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "relay-idle-client", shouldDisplay: false)

    @Option var host: String
    @Option var port: Int
    @Option var credentials: String
    @Option var first: Int
    @Option var count: Int
    @Option var concurrency = 256

    func run() async throws {
        let text = try String(contentsOfFile: credentials, encoding: .utf8)
        let headers = text.split(separator: "\n").dropFirst(first).prefix(count).map(String.init)
        let group = benchEventLoops(1)
        let stats = makeLoopStats(group)
        let loop = group.next()
        let loopStats = stats[ObjectIdentifier(loop)] ?? LoopStats()
        let payload = BenchPayload(size: 16)
        var open: [BenchSocket] = []
        var failed = 0
        var failures: [String: Int] = [:]
        await withTaskGroup(of: Result<BenchSocket, any Error>.self) { tasks in
            var next = 0
            func add() {
                let header = headers[next]
                next += 1
                tasks.addTask {
                    do {
                        return .success(try await connectBenchSocket(on: loop, host: host, port: port, authorization: header, stats: loopStats, payload: payload).get())
                    } catch {
                        return .failure(error)
                    }
                }
            }
            while next < min(concurrency, headers.count) { add() }
            while let result = await tasks.next() {
                switch result {
                case .success(let socket): open.append(socket)
                case .failure(let error):
                    failed += 1
                    failures["\(error)", default: 0] += 1
                }
                if next < headers.count { add() }
            }
        }
        // Why connections failed (to standard error, which the bench passes through).
        for (reason, count) in failures.sorted(by: { $0.value > $1.value }) {
            FileHandle.standardError.write(Data("relay-idle-client: \(count) failed: \(reason)\n".utf8))
        }
        FileHandle.standardOutput.write(Data("READY \(open.count) \(failed)\n".utf8))
        _ = await Task.detached { FileHandle.standardInput.readDataToEndOfFile() }.value
        try? await group.shutdownGracefully()
    }
}
