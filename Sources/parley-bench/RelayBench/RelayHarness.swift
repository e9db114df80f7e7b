import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import ParleyProtocol
import ParleyWire

#if canImport(Glibc)
import Glibc
#endif

/// A `parley-relay` child process on a temporary database, or an external relay (`--server`).
final class RelayTarget: @unchecked Sendable {
    let host: String
    let port: Int
    /// The port of the relay's metrics listener (loopback), when known.
    let metricsPort: Int?
    /// The relay's process id (for /proc memory and CPU figures), when known.
    let pid: Int32?
    private let process: Process?
    private let directory: URL?
    let flags: [String]

    private init(
        host: String, port: Int, metricsPort: Int?, pid: Int32?, process: Process?, directory: URL?, flags: [String]
    ) {
        self.host = host
        self.port = port
        self.metricsPort = metricsPort
        self.pid = pid
        self.process = process
        self.directory = directory
        self.flags = flags
    }

    var baseURL: String { "http://\(host):\(port)" }

    /// The limits the bench raises (documented in BENCHMARKS.md): it registers thousands of accounts and sends
    /// and connects from one address, and devices send many frames per second over their WebSocket.
    static func benchFlags(maxGroupMembers: Int) -> [String] {
        [
            "--requests-per-second-per-address", "1000000",
            "--creations-per-minute-per-address", "100000000",
            "--max-connections-per-address", "1000000",
            "--client-frames-per-second", "100000",
            "--max-queued-messages", "1000000",
            "--max-group-members", String(maxGroupMembers),
            "--log-level", "warning",
        ]
    }

    /// Starts the relay binary (default: `parley-relay` next to this executable) on a free port, on `database`
    /// (default: a SQLite file in a temporary folder).
    static func spawn(binary: String?, extraFlags: [String], database: String? = nil) async throws -> RelayTarget {
        let executable = binary ?? URL(fileURLWithPath: ownExecutablePath()).deletingLastPathComponent()
            .appendingPathComponent("parley-relay").path
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BenchError.relay("no relay binary at \(executable) (build parley-relay, or pass --relay-binary / --server)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("parley-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let port = try freePort()
        let metricsPort = try freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        let flags = [
            "--port", String(port), "--metrics-port", String(metricsPort),
            "--database", database ?? directory.appendingPathComponent("relay.sqlite").path,
        ] + extraFlags
        process.arguments = flags
        let log = directory.appendingPathComponent("relay.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let target = RelayTarget(
            host: "127.0.0.1", port: port, metricsPort: metricsPort, pid: process.processIdentifier, process: process,
            directory: directory, flags: flags)
        let deadline = monotonicNanos() + 30_000_000_000
        while monotonicNanos() < deadline {
            if !process.isRunning { throw BenchError.relay("relay exited at start; log: \(log.path)") }
            if (try? await BenchHTTP.shared.get(target.baseURL + "/healthz")) != nil { return target }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError.relay("relay did not answer /healthz within 30 s; log: \(log.path)")
    }

    static func external(_ url: String, pid: Int32?, metricsPort: Int?) throws -> RelayTarget {
        guard let components = URLComponents(string: url), let host = components.host, let port = components.port else {
            throw BenchError.relay("--server must look like http://127.0.0.1:8080")
        }
        return RelayTarget(host: host, port: port, metricsPort: metricsPort, pid: pid, process: nil, directory: nil, flags: [])
    }

    /// SIGTERM, wait, remove the temporary database.
    func stop() {
        if let process, process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// Resident set size of the relay, bytes (from /proc/PID/status VmRSS).
    func residentBytes() -> Int? {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// User + system CPU seconds of the relay so far.
    func cpuSeconds() -> Double? {
        guard let pid else { return nil }
        return processCPUSeconds(pid)
    }

    func openFiles() -> Int? {
        guard let pid else { return nil }
        return (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// The relay's Prometheus samples (`name` or `name{labels}` -> value), from its metrics listener.
    func metrics() async -> [String: Double] {
        guard let metricsPort, let text = try? await BenchHTTP.shared.get("http://\(host):\(metricsPort)/metrics") else {
            return [:]
        }
        var result: [String: Double] = [:]
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { result[String(parts[0])] = value }
        }
        return result
    }
}

/// The path of this executable (from /proc/self/exe).
func ownExecutablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// User + system CPU seconds of a process (from /proc/PID/stat).
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime and stime are fields 14 and 15 (1-based in proc(5)).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    return (user + system) / ticks
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw BenchError.relay("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw BenchError.relay("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw BenchError.relay("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The HTTP side of the bench (registration, groups, group sends, health, metrics), on AsyncHTTPClient.
final class BenchHTTP: Sendable {
    static let shared = BenchHTTP()
    let client: HTTPClient

    init() {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func get(_ url: String) async throws -> Data {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else { throw BenchError.http("GET \(url): \(response.status.code)") }
        return Data(body.readableBytesView)
    }

    func json<Response: Decodable>(
        _ method: HTTPMethod, _ url: String, body: some Encodable, authorization: String?, expect: Response.Type
    ) async throws -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Content-Type", value: "application/json")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.body = .bytes(ByteBuffer(bytes: try WireCoding.encoder().encode(body)))
        let response = try await client.execute(request, timeout: .seconds(60))
        let data = Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw BenchError.http("\(method) \(url): \(response.status.code) \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return try WireCoding.decoder().decode(Response.self, from: data)
    }

    /// Registers `count` accounts named `<prefix><index>` (one device each), `concurrency` at a time.
    func register(_ target: RelayDeployment, prefix: String, count: Int, concurrency: Int = 32) async throws -> [DeviceCredentials] {
        var result = [DeviceCredentials?](repeating: nil, count: count)
        // One key set for every bench account: the relay checks formats and the signed prekey's signature.
        let identity = try IdentityKeyPair.generate()
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: identity, timestamp: 0)
        let keys = NewDeviceKeys(
            registrationId: 4242, identityKey: Data(identity.identityKey.serialized),
            signedPreKey: SignedPreKey(
                keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: [])
        try await withThrowingTaskGroup(of: (Int, DeviceCredentials).self) { group in
            var next = 0
            func add() {
                let index = next
                next += 1
                let request = RegisterAccountRequest(name: "\(prefix)\(index)", device: keys)
                group.addTask {
                    (index, try await self.json(.POST, target.node(index).baseURL + "/v1/accounts", body: request, authorization: nil, expect: DeviceCredentials.self))
                }
            }
            while next < min(concurrency, count) { add() }
            while let (index, credentials) = try await group.next() {
                result[index] = credentials
                if next < count { add() }
            }
        }
        return result.compactMap { $0 }
    }
}

/// Shared event loops of the bench's WebSockets.
func benchEventLoops(_ threads: Int) -> MultiThreadedEventLoopGroup {
    MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
}

/// Connects every device (`concurrency` upgrades in flight), spreading them over the group's loops.
func connectAll(
    _ credentials: [DeviceCredentials], target: RelayDeployment, group: MultiThreadedEventLoopGroup, stats: [ObjectIdentifier: LoopStats],
    payload: BenchPayload, concurrency: Int = 200, ackBatch: Int = 64, ackDelay: TimeAmount = .milliseconds(5)
) async throws -> [BenchSocket] {
    let loops = Array(group.makeIterator())
    var sockets = [BenchSocket?](repeating: nil, count: credentials.count)
    try await withThrowingTaskGroup(of: (Int, BenchSocket).self) { tasks in
        var next = 0
        func add() {
            let index = next
            next += 1
            let loop = loops[index % loops.count]
            let loopStats = stats[ObjectIdentifier(loop)] ?? LoopStats()
            let authorization = credentials[index].authorizationHeader
            tasks.addTask {
                let socket = try await connectBenchSocket(
                    on: loop, host: target.node(index).host, port: target.node(index).port, authorization: authorization, stats: loopStats,
                    payload: payload, ackBatch: ackBatch, ackDelay: ackDelay
                ).get()
                return (index, socket)
            }
        }
        while next < min(concurrency, credentials.count) { add() }
        while let (index, socket) = try await tasks.next() {
            sockets[index] = socket
            if next < credentials.count { add() }
        }
    }
    return sockets.compactMap { $0 }
}

/// One `LoopStats` per event loop of the group.
func makeLoopStats(_ group: MultiThreadedEventLoopGroup) -> [ObjectIdentifier: LoopStats] {
    var result: [ObjectIdentifier: LoopStats] = [:]
    for loop in group.makeIterator() { result[ObjectIdentifier(loop)] = LoopStats() }
    return result
}

/// Sum of the counters of every loop, read on each loop.
func snapshot(_ group: MultiThreadedEventLoopGroup, _ stats: [ObjectIdentifier: LoopStats]) async throws -> LoopStats.Snapshot {
    var total = LoopStats.Snapshot()
    for loop in group.makeIterator() {
        guard let loopStats = stats[ObjectIdentifier(loop)] else { continue }
        total = total + (try await loop.submit { loopStats.snapshot }.get())
    }
    return total
}

/// Runs `body` on every loop with its stats (e.g. to set the recording window).
func onEveryLoop(_ group: MultiThreadedEventLoopGroup, _ stats: [ObjectIdentifier: LoopStats], _ body: @escaping @Sendable (LoopStats) -> Void) async throws {
    for loop in group.makeIterator() {
        guard let loopStats = stats[ObjectIdentifier(loop)] else { continue }
        try await loop.submit { body(loopStats) }.get()
    }
}

/// Merged latency histograms of every loop.
func mergedLatency(
    _ group: MultiThreadedEventLoopGroup, _ stats: [ObjectIdentifier: LoopStats], commit: Bool = false, run: Int = 0
) async throws -> Histogram<UInt64> {
    var merged = newHistogram()
    for loop in group.makeIterator() {
        guard let loopStats = stats[ObjectIdentifier(loop)] else { continue }
        let histogram = try await loop.submit {
            commit ? loopStats.commitLatency : (run < loopStats.latencyRuns.count ? loopStats.latencyRuns[run] : newHistogram())
        }.get()
        merged.add(histogram)
    }
    return merged
}
