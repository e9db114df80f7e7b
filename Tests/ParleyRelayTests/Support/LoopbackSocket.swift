#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection to 127.0.0.1:`port`, non-blocking; the caller closes it. `receiveBuffer` (bytes) is set
/// before connecting, so that it bounds the window the relay sees. `source` binds the local end to another
/// loopback address first (`127.0.0.2`, ...: Linux routes all of 127/8 to the loopback interface), so that the
/// relay sees a different peer address. Waits at most `timeout` for the connection (a relay that does not
/// accept would otherwise block the calling thread for minutes); in async code use `connectLoopback`, which
/// waits without blocking a thread.
func connectLoopbackSocket(
    port: Int, receiveBuffer: Int32? = nil, source: String? = nil, timeout: Duration = .seconds(10)
) throws -> Int32 {
    let fd = try startConnecting(port: port, receiveBuffer: receiveBuffer, source: source)
    var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    guard poll(&poller, 1, milliseconds) == 1 else {
        close(fd)
        throw TestFailure("connect: timed out")
    }
    try finishConnecting(fd)
    return fd
}

/// `connectLoopbackSocket`, waiting for the connection without blocking a thread of the concurrency pool.
func connectLoopback(
    port: Int, receiveBuffer: Int32? = nil, source: String? = nil, timeout: Duration = .seconds(10)
) async throws -> Int32 {
    let fd = try startConnecting(port: port, receiveBuffer: receiveBuffer, source: source)
    let deadline = ContinuousClock.now + timeout
    while true {
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&poller, 1, 0) == 1 { break }
        guard ContinuousClock.now < deadline else {
            close(fd)
            throw TestFailure("connect: timed out")
        }
        try? await Task.sleep(for: .milliseconds(5))
    }
    try finishConnecting(fd)
    return fd
}

/// A non-blocking socket with its connect under way.
private func startConnecting(port: Int, receiveBuffer: Int32?, source: String?) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    if var size = receiveBuffer {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    if let source {
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = 0
        local.sin_addr.s_addr = inet_addr(source)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound else {
            close(fd)
            throw TestFailure("bind \(source): errno \(errno)")
        }
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let started = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 ? 0 : errno
        }
    }
    guard started == 0 || started == EINPROGRESS else {
        close(fd)
        throw TestFailure("connect: errno \(started)")
    }
    return fd
}

/// Checks the outcome of a connect the socket reported writable for.
private func finishConnecting(_ fd: Int32) throws {
    var failure: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0 else {
        close(fd)
        throw TestFailure("connect: errno \(failure)")
    }
}

/// Non-blocking reads and writes on a test socket, and what they tell about the relay's end.
enum LoopbackIO {
    /// What a read without waiting found.
    enum ReadResult: Equatable {
        case data(Int)
        case nothingYet
        /// End of file or reset: the relay closed the connection.
        case closed
    }

    static func read(_ fd: Int32, into buffer: inout [UInt8], max: Int = 65_536) -> ReadResult {
        var chunk = [UInt8](repeating: 0, count: max)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if count > 0 {
            buffer.append(contentsOf: chunk.prefix(count))
            return .data(count)
        }
        if count == 0 { return .closed }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .nothingYet : .closed
    }

    /// What a write without waiting did.
    enum WriteResult: Equatable {
        /// Bytes taken (maybe fewer than given; 0 when the socket buffer is full).
        case wrote(Int)
        /// Reset or broken pipe: the relay closed the connection.
        case closed
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) -> WriteResult {
        let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if count >= 0 { return .wrote(count) }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .wrote(0) : .closed
    }

    /// Writes all of `bytes`, waiting while the socket buffer is full; false if the connection closed or
    /// `timeout` passed.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], timeout: Duration = .seconds(20)) async -> Bool {
        var offset = 0
        let deadline = ContinuousClock.now + timeout
        while offset < bytes.count {
            switch write(fd, Array(bytes[offset...])) {
            case .closed: return false
            case .wrote(let count):
                offset += count
                if count == 0 {
                    guard ContinuousClock.now < deadline else { return false }
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
        }
        return true
    }

    /// Whether the relay has closed the connection, found without consuming what it sent: end of file or a
    /// reset seen by a peeking read.
    static func closedByPeer(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_PEEK))
        if count == 0 { return true }
        if count < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        // Data is waiting; a reset or end of file would come after it. Ask the kernel about the TCP state.
        return tcpState(fd).map { $0 != 1 } ?? false  // 1 = TCP_ESTABLISHED
    }

    /// The connection's TCP state (`tcpi_state` of TCP_INFO; its first byte).
    static func tcpState(_ fd: Int32) -> UInt8? {
        var info = [UInt8](repeating: 0, count: 256)
        var length = socklen_t(info.count)
        let tcpInfo: Int32 = 11  // TCP_INFO (netinet/tcp.h; not imported by Glibc)
        let result = info.withUnsafeMutableBytes { getsockopt(fd, Int32(IPPROTO_TCP), tcpInfo, $0.baseAddress, &length) }
        return result == 0 ? info[0] : nil
    }

    /// Reads until the first line of the relay's answer has come; that line (`HTTP/1.1 200 OK`), or nil if the
    /// relay closed the connection first or nothing came within `timeout`.
    static func statusLine(_ fd: Int32, timeout: Duration = .seconds(20)) async -> String? {
        var response: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let result = read(fd, into: &response)
            if let end = response.firstRange(of: Array("\r\n".utf8)) {
                return String(decoding: response[..<end.lowerBound], as: UTF8.self)
            }
            if result == .closed { return nil }
            if result == .nothingYet { try? await Task.sleep(for: .milliseconds(5)) }
        }
        return nil
    }

    /// One `GET` on a new connection (from `source`, default 127.0.0.1): the status line of the answer, or nil
    /// (refused, closed, or no answer within `timeout`).
    static func get(port: Int, _ path: String, source: String? = nil, timeout: Duration = .seconds(20)) async -> String? {
        guard let fd = try? await connectLoopback(port: port, source: source, timeout: timeout) else { return nil }
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard await writeAll(fd, request, timeout: timeout) else { return nil }
        return await statusLine(fd, timeout: timeout)
    }
}
