import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// Slowloris and its relatives (issue 9, item 2; a client that does not read, item 4), at the relay's default
/// limits: a request head must be complete within the first-request deadline, a body must keep a minimum rate,
/// a connection whose responses are not read is closed, and one peer address holds a bounded number of
/// connections.
@Suite("Slow and greedy clients", .timeLimit(.minutes(4)))
struct SlowClientTests {
    /// Waits until every socket is closed by the relay; the ones still open at the end.
    static func stillOpen(_ sockets: [Int32], within timeout: Duration) async -> [Int32] {
        let deadline = ContinuousClock.now + timeout
        var open = sockets
        while !open.isEmpty, ContinuousClock.now < deadline {
            open.removeAll { LoopbackIO.closedByPeer($0) }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return open
    }

    @Test func aRequestHeadThatDoesNotCompleteIsClosedAtTheDeadline() async throws {
        let relay = try await TestRelay.start()
        let deadline = relay.limits.firstRequestTimeoutSeconds
        let oneByte = try await connectLoopback(port: relay.port)
        let partial = try await connectLoopback(port: relay.port)
        let trickle = try await connectLoopback(port: relay.port)
        defer { for fd in [oneByte, partial, trickle] { close(fd) } }
        #expect(LoopbackIO.write(oneByte, Array("G".utf8)) == .wrote(1))
        let head = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8)
        #expect(LoopbackIO.write(partial, head) == .wrote(head.count))
        #expect(LoopbackIO.write(trickle, head) == .wrote(head.count))

        // The trickling one sends a byte of its never-ending header every 500 ms meanwhile.
        let trickler = Task {
            while !Task.isCancelled, LoopbackIO.write(trickle, Array("a".utf8)) == .wrote(1) {
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        let open = await Self.stillOpen([oneByte, partial, trickle], within: .seconds(deadline * 3 + 10))
        trickler.cancel()
        #expect(open.isEmpty, "\(open.count) of 3 incomplete request heads still held a connection")
        // Complete requests are served as before.
        #expect(try await relay.http.raw(.GET, "/healthz").status == 200)
        try await relay.stop()
    }

    @Test func aBodyThatTricklesIsClosedAndAnHonestOneIsServed() async throws {
        let relay = try await TestRelay.start()
        let slow = try await connectLoopback(port: relay.port)
        defer { close(slow) }
        let head = Array("POST /v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{".utf8)
        #expect(LoopbackIO.write(slow, head) == .wrote(head.count))
        let trickler = Task {
            while !Task.isCancelled, LoopbackIO.write(slow, Array(" ".utf8)) == .wrote(1) {
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        let open = await Self.stillOpen([slow], within: .seconds(60))
        trickler.cancel()
        #expect(open.isEmpty, "a body trickling at 2 bytes/s still held its connection after 60 s")

        // A large body sent in pieces at an honest pace (a message send's) is read and answered (here:
        // refused as not JSON).
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let honest = try await connectLoopback(port: relay.port)
        defer { close(honest) }
        let size = 256 * 1024
        let honestHead = Array(
            ("PUT /v1/messages/\(alice.account) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: \(alice.authorizationHeader)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(size)\r\n\r\n").utf8)
        #expect(await LoopbackIO.writeAll(honest, honestHead))
        for _ in 0..<(size / 16_384) {
            #expect(await LoopbackIO.writeAll(honest, [UInt8](repeating: 0x20, count: 16_384)))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await LoopbackIO.statusLine(honest)?.hasPrefix("HTTP/1.1 400") == true)
        try await relay.stop()
    }

    @Test func aClientThatDoesNotReadItsResponsesIsClosed() async throws {
        let relay = try await TestRelay.start()
        // A linked device's status answer carries its provisioning blob: 256 KiB, ~350 KB as JSON.
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let second = try await relay.http.link(from: alice, blob: Fixtures.bytes(256 * 1024))
        let greedy = try await connectLoopback(port: relay.port, receiveBuffer: 4_096)
        defer { close(greedy) }
        // Pipelined requests, never reading the answers: more answers than the sockets hold.
        let request = Array(
            "GET /v1/devices/links/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: \(second.authorizationHeader)\r\n\r\n".utf8)
        #expect(await LoopbackIO.writeAll(greedy, Array([[UInt8]](repeating: request, count: 60).joined())))
        let open = await Self.stillOpen([greedy], within: .seconds(120))
        #expect(open.isEmpty, "a connection whose answers were never read was still open after 120 s")
        try await relay.stop()
    }

    @Test func connectionsPerAddressAreBoundedAndCounted() async throws {
        let relay = try await TestRelay.start()
        let limit = relay.limits.maxConnectionsPerAddress
        let request = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        /// Sends one request; the status line of the answer, or nil if the relay closed the connection instead.
        func ask(_ fd: Int32) async -> String? {
            guard await LoopbackIO.writeAll(fd, request) else { return nil }
            return await LoopbackIO.statusLine(fd)
        }

        // One address opens its share: each connection is served and kept alive.
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<limit {
            let fd = try await connectLoopback(port: relay.port, source: "127.0.0.2")
            held.append(fd)
            #expect(await ask(fd)?.hasPrefix("HTTP/1.1 ") == true)
        }
        // More from that address are closed without an answer, and counted.
        var refused: [Int32] = []
        defer { for fd in refused { close(fd) } }
        for _ in 0..<20 {
            let fd = try await connectLoopback(port: relay.port, source: "127.0.0.2")
            refused.append(fd)
            #expect(await ask(fd) == nil)
        }
        #expect(try await relay.metric("parley_relay_connections_refused_total{reason=\"address\"}") >= 20)
        // Other addresses are served meanwhile, devices included.
        let other = try await connectLoopback(port: relay.port, source: "127.0.0.3")
        defer { close(other) }
        #expect(await ask(other) == "HTTP/1.1 200 OK")
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let ws = try await relay.connect(alice)
        #expect(try await ws.backlog().isEmpty)
        await ws.close()
        try await relay.stop()
    }
}
