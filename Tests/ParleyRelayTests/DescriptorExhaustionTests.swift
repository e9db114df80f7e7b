import Foundation
import NIOConcurrencyHelpers
import ParleyTestSupport
import ParleyWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `parley-relay` under a small open-file limit, at its default settings, while an attacker opens as
/// many connections as it can (slowloris: one byte each) from one loopback address or from several: `/healthz`
/// and honest devices are still served (issue 9, item 2). Without a bound on connections the relay runs out
/// of file descriptors and stops accepting.
@Suite("Descriptor exhaustion", .timeLimit(.minutes(4)))
struct DescriptorExhaustionTests {
    /// The child relay's open-file limit (set with `ulimit -n` before it starts).
    static let fileLimit = 512

    /// Starts `parley-relay` with `fileLimit` open files and `arguments`; returns it and its port.
    static func launch(_ arguments: [String] = [], fileLimit: Int = fileLimit) async throws -> (ChildProcess, Int) {
        let binary = KillRestartTests.binary
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestFailure("\(binary) is missing: build every product first (swift build --build-tests)")
        }
        let port = try KillRestartTests.freePort()
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("parley-fd-\(UUID().uuidString).sqlite").path
        let process = try ChildProcess.spawn(
            "/bin/sh",
            ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", binary, "--port", "\(port)", "--database", database,
             "--log-level", "error"] + arguments,
            captureOutput: true)
        let ready = await eventually(timeout: .seconds(20)) { await LoopbackIO.get(port: port, "/healthz", timeout: .seconds(2)) != nil }
        guard ready else {
            await process.stop()
            throw TestFailure("parley-relay did not become ready on port \(port): \(process.output())")
        }
        return (process, port)
    }

    /// Slowloris connections (one byte of a request each), kept at `target` open ones: closed ones are replaced.
    /// Runs on a thread of its own: its connects may block, which must not hold the test's concurrency pool.
    final class Attacker: Sendable {
        private struct State {
            var sockets: [Int32] = []
            var opened = 0
            var stopping = false
            var stopped = false
        }

        private let state = NIOLockedValueBox(State())

        init(port: Int, addresses: [String], target: Int) {
            let state = self.state
            let thread = Thread {
                var next = 0
                while !state.withLockedValue({ $0.stopping }) {
                    // Replace what the relay closed, then open more until `target` are open.
                    let closed = state.withLockedValue { state -> [Int32] in
                        let gone = state.sockets.filter { LoopbackIO.closedByPeer($0) }
                        state.sockets.removeAll { gone.contains($0) }
                        return gone
                    }
                    for fd in closed { close(fd) }
                    // Up to 500 new connections a second: enough to keep every slot of the relay churning, without
                    // taking the machine from the other tests.
                    var burst = 0
                    while state.withLockedValue({ $0.sockets.count }) < target, burst < 50 {
                        burst += 1
                        let source = addresses[next % addresses.count]
                        next += 1
                        guard let fd = try? connectLoopbackSocket(port: port, source: source, timeout: .seconds(1)) else {
                            continue
                        }
                        _ = LoopbackIO.write(fd, Array("G".utf8))
                        state.withLockedValue {
                            $0.sockets.append(fd)
                            $0.opened += 1
                        }
                    }
                    usleep(100_000)
                }
                state.withLockedValue { state in
                    for fd in state.sockets { close(fd) }
                    state.sockets.removeAll()
                    state.stopped = true
                }
            }
            thread.start()
        }

        var totalOpened: Int { state.withLockedValue { $0.opened } }

        func stop() async {
            state.withLockedValue { $0.stopping = true }
            _ = await eventually(timeout: .seconds(30)) { self.state.withLockedValue { $0.stopped } }
        }
    }

    /// Honest traffic while the attack runs: `/healthz` on new connections, registrations, a device session and
    /// a message through it.
    static func honestTraffic(port: Int) async throws {
        for _ in 0..<5 {
            #expect(await LoopbackIO.get(port: port, "/healthz", timeout: .seconds(10)) == "HTTP/1.1 200 OK")
            try await Task.sleep(for: .milliseconds(200))
        }
        let http = HTTPTestClient(port: port)
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let bobWS = try await WSTestClient.connect(port: port, credentials: bob)
        #expect(try await bobWS.backlog().isEmpty)
        let content = Fixtures.bytes(100)
        #expect(try await http.sendToAll(from: alice, to: bob.account, content: content).status == 200)
        #expect(await bobWS.next(.message)?.envelope?.content == content)
        await bobWS.close()
    }

    @Test(arguments: [1, 8])
    func anAttackerCannotStarveHonestClients(addresses: Int) async throws {
        let (relay, port) = try await Self.launch()
        // More connections than the relay has file descriptors.
        let attacker = Attacker(
            port: port, addresses: (0..<addresses).map { "127.0.0.\(2 + $0)" }, target: Self.fileLimit + 200)
        #expect(await eventually(timeout: .seconds(30)) { attacker.totalOpened >= Self.fileLimit + 200 })
        do {
            try await Self.honestTraffic(port: port)
        } catch {
            Issue.record("honest traffic failed during the attack: \(error)")
        }
        await attacker.stop()
        let status = await relay.stop()
        #expect(status == .exited(0), "\(relay.output().suffix(2_000))")
    }

    @Test func theCommandServesMetricsOnlyOnItsLoopbackListener() async throws {
        let metricsPort = try KillRestartTests.freePort()
        let (relay, port) = try await Self.launch(["--metrics-port", "\(metricsPort)"], fileLimit: 1_024)
        #expect(await LoopbackIO.get(port: port, "/metrics") == "HTTP/1.1 404 Not Found")
        #expect(await LoopbackIO.get(port: metricsPort, "/metrics") == "HTTP/1.1 200 OK")
        await relay.stop()
    }
}
