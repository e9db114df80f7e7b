import Foundation
@testable import ParleyClient
import ParleyWire
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A relay that accepts the TCP connection and never answers the WebSocket upgrade (stalled, or a
/// proxy in the way) must not hold the device: `close(timeout:)` returns and `frames` finishes.
/// Before, the wait for the connection task never ended (the WebSocket client ignores cancellation
/// while it waits for the upgrade answer) and `parley sync` hung for good.
@Suite struct RelayConnectionCloseTests {
    @Test(.timeLimit(.minutes(2))) func closeReturnsWhenTheRelayNeverAnswersTheUpgrade() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let connection = RelayConnection.connect(
            webSocketURL: "ws://127.0.0.1:\(listener.port)/v1/ws",
            credentials: DeviceCredentials(account: "alice", deviceId: 1, credential: String(repeating: "A", count: 43)))
        // Give the client time to connect and send its upgrade request.
        try await Task.sleep(for: .milliseconds(500))
        let closed = await Self.finishes(within: .seconds(30)) { await connection.close(timeout: .seconds(1)) }
        #expect(closed, "close(timeout:) did not return")
        let ended = await Self.finishes(within: .seconds(30)) { for await _ in connection.frames {} }
        #expect(ended, "frames did not finish")
    }

    /// Whether `body` finishes within `limit`, without waiting for it when it does not (a task group
    /// would wait for it).
    static func finishes(within limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let result = FirstResult()
        return await withCheckedContinuation { continuation in
            result.set(continuation)
            Task {
                await body()
                result.offer(true)
            }
            Task {
                try? await Task.sleep(for: limit)
                result.offer(false)
            }
        }
    }
}

private final class FirstResult: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Bool, Never>?
    private var value: Bool?

    func set(_ continuation: CheckedContinuation<Bool, Never>) {
        lock.withLock {
            if let value { continuation.resume(returning: value) } else { self.continuation = continuation }
        }
    }

    func offer(_ offered: Bool) {
        let pending: CheckedContinuation<Bool, Never>? = lock.withLock {
            guard value == nil else { return nil }
            value = offered
            defer { continuation = nil }
            return continuation
        }
        pending?.resume(returning: offered)
    }
}

/// A TCP socket on 127.0.0.1 that listens and never accepts: the kernel completes handshakes, and
/// nobody reads or answers.
private final class SilentListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16

    init() throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw POSIXError(.EINVAL) }
        port = UInt16(bigEndian: address.sin_port)
    }

    func close() {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }
}
