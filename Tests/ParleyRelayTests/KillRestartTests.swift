import Foundation
import ParleyTestSupport
import ParleyWire
import Testing

/// The real `parley-relay` executable, killed with SIGKILL after acknowledging messages and
/// started again on the same database: nothing it acknowledged is lost.
@Suite("SIGKILL and restart", .timeLimit(.minutes(4)))
struct KillRestartTests {
    /// `parley-relay` next to the test bundle (any `--scratch-path`), else in `.build/debug`; `PARLEY_TEST_RELAY_BINARY`
    /// names another one (e.g. an older build, to show that a test fails without a fix).
    static let binary: String = {
        if let given = ProcessInfo.processInfo.environment["PARLEY_TEST_RELAY_BINARY"], !given.isEmpty { return given }
        let running = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: running).deletingLastPathComponent()
        // The test binary may sit inside an `.xctest` bundle directory.
        if directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
        let sibling = directory.appendingPathComponent("parley-relay").path
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/parley-relay").path
    }()

    /// A loopback port that was free a moment ago.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("bind") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func launch(port: Int, database: String) async throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestFailure("\(binary) is missing: build every product first (swift build --build-tests)")
        }
        let process = try ChildProcess.spawn(
            binary, ["--port", "\(port)", "--database", database, "--log-level", "warning"])
        let http = HTTPTestClient(port: port)
        let ready = await eventually(timeout: .seconds(20)) { (try? await http.raw(.GET, "/healthz").status) == 200 }
        guard ready else {
            await process.stop()
            throw TestFailure("parley-relay did not become ready on port \(port)")
        }
        return process
    }

    @Test func acknowledgedMessagesSurviveSIGKILL() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("parley-kill-\(UUID().uuidString).sqlite").path
        let port = try Self.freePort()
        var relay = try await Self.launch(port: port, database: database)
        let http = HTTPTestClient(port: port)
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        var sent: [Data] = []
        for _ in 0..<50 {
            let content = Fixtures.bytes(200)
            let reply = try await http.sendToAll(from: alice, to: bob.account, content: content)
            #expect(reply.status == 200)  // acknowledged: durable on disk
            sent.append(content)
        }
        relay.signal(SIGKILL)
        #expect(await relay.wait() == .signaled(SIGKILL))

        relay = try await Self.launch(port: port, database: database)
        do {
            let ws = try await WSTestClient.connect(port: port, credentials: bob)
            let backlog = try await ws.backlog()
            #expect(backlog.map(\.content) == sent)
            await ws.close()
        } catch {
            await relay.stop()
            throw error
        }
        #expect(await relay.stop() == .exited(0))
    }
}
