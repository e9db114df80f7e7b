import Foundation
import Testing
@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// Connections that never send a request: closed after the first-request deadline, and never able to hold
/// up a graceful shutdown (they used to hold it until the peer went away: 60 s for an idle pooled
/// connection of an HTTP client).
@Suite("Silent connections", .timeLimit(.minutes(5)))
struct SilentConnectionTests {
    /// A non-blocking loopback TCP connection to the relay that sends nothing.
    final class SilentSocket: Sendable {
        let fd: Int32

        init(port: Int) throws {
            fd = try connectLoopbackSocket(port: port)
        }

        deinit { close(fd) }

        /// Whether the relay has closed the connection (a read sees end of file or a reset).
        var closedByPeer: Bool {
            var byte: UInt8 = 0
            let count = read(fd, &byte, 1)
            if count == 0 { return true }
            if count < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
            return false
        }
    }

    @Test func aConnectionThatSendsNothingIsClosedAfterTheDeadline() async throws {
        var limits = RelayLimits()
        limits.firstRequestTimeoutSeconds = 2
        let relay = try await TestRelay.start(limits: limits)
        let started = ContinuousClock.now
        let silent = try SilentSocket(port: relay.port)
        let closedAtOnce = silent.closedByPeer
        if ContinuousClock.now - started < .seconds(1) { #expect(!closedAtOnce) }
        #expect(await eventually(timeout: .seconds(20)) { silent.closedByPeer })
        #expect(ContinuousClock.now - started >= .seconds(2))

        // A connection that does send a request is served as before.
        #expect(try await relay.http.raw(.GET, "/healthz").status == 200)
        try await relay.stop()
    }

    @Test func silentConnectionsDoNotHoldUpAGracefulShutdown() async throws {
        // Deadline and graceful-shutdown bound both far longer than the stop may take, even on a loaded machine: a
        // connection that held the shutdown would show as a stop of 100 s (the graceful bound), not as a slow one.
        var limits = RelayLimits()
        limits.firstRequestTimeoutSeconds = 150
        let relay = try await TestRelay.start(limits: limits, gracefulShutdownSeconds: 100)
        let sockets = try (0..<3).map { _ in try SilentSocket(port: relay.port) }
        #expect(try await relay.http.raw(.GET, "/healthz").status == 200)
        let started = ContinuousClock.now
        try await relay.stop(limit: .seconds(150))
        #expect(ContinuousClock.now - started < .seconds(80))
        for socket in sockets { #expect(socket.closedByPeer) }
    }

    @Test func aWebSocketOutlivesTheFirstRequestDeadline() async throws {
        var limits = RelayLimits()
        limits.firstRequestTimeoutSeconds = 1
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"))
        let ws = try await relay.connect(bob)
        #expect(try await ws.backlog().isEmpty)
        try await Task.sleep(for: .milliseconds(2_500))  // well past the deadline
        let content = Fixtures.bytes(64)
        #expect(try await relay.http.sendToAll(from: alice, to: bob.account, content: content).status == 200)
        #expect(await ws.next(.message)?.envelope?.content == content)
        await ws.close()
        try await relay.stop()
    }

    /// A device that connects once the shutdown has closed the open sessions (a client reconnecting at once)
    /// is closed too, and the stop does not wait for it.
    @Test func aSessionOpenedDuringShutdownIsClosed() async throws {
        // A grace period far beyond the bound below: a stop that waited for the late session would take 100 s.
        let relay = try await TestRelay.start(gracefulShutdownSeconds: 100)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let early = try await relay.connect(alice)
        #expect(try await early.backlog().isEmpty)
        // What the shutdown does first: close every registered session.
        await relay.running.core.hub.closeAll()
        #expect(await early.waitClosed())
        let late = try await relay.connect(alice)
        #expect(await late.waitClosed())
        let started = ContinuousClock.now
        try await relay.stop(limit: .seconds(150))
        #expect(ContinuousClock.now - started < .seconds(80))
        await early.close()
        await late.close()
    }
}
