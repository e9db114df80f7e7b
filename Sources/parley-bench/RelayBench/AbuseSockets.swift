import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Plain non-blocking sockets for the attackers of `relay-abuse`: they must behave badly (never read, trickle,
/// flood), which a NIO client would not do on its own. Each attacker runs on a thread of its own.
enum AbuseSocket {
    /// A TCP connection to `host:port` from `source` (a loopback address such as 127.0.0.7: Linux routes all of
    /// 127/8 to the loopback interface, so each is a separate peer to the relay), non-blocking; nil if it does
    /// not connect within `timeoutMilliseconds`.
    static func connect(
        host: String, port: Int, source: String?, receiveBuffer: Int32? = nil, timeoutMilliseconds: Int32 = 2_000
    ) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard bound else {
                close(fd)
                return nil
            }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 ? 0 : errno
            }
        }
        if result != 0 {
            guard result == EINPROGRESS else {
                close(fd)
                return nil
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard poll(&poller, 1, timeoutMilliseconds) == 1, getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0,
                failure == 0
            else {
                close(fd)
                return nil
            }
        }
        return fd
    }

    enum WriteResult {
        case wrote(Int)
        case closed
    }

    /// Writes what the socket takes now (0 when its buffer is full).
    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> WriteResult {
        let count = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        if count >= 0 { return .wrote(count) }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .wrote(0) : .closed
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) -> WriteResult {
        bytes.withUnsafeBytes { write(fd, $0) }
    }

    /// Writes all of `bytes`, waiting (up to `timeoutMilliseconds` without progress) while the socket is full.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], timeoutMilliseconds: Int32 = 10_000) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let result = bytes.withUnsafeBytes { write(fd, UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            switch result {
            case .closed: return false
            case .wrote(let count):
                offset += count
                if count == 0 {
                    var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    guard poll(&poller, 1, timeoutMilliseconds) == 1 else { return false }
                }
            }
        }
        return true
    }

    /// Reads and discards what is there; false once the connection is closed.
    static func drain(_ fd: Int32, into sink: ((UnsafeRawBufferPointer) -> Void)? = nil) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                if let sink { buffer.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[..<count])) } }
                continue
            }
            if count == 0 { return false }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
    }

    /// Whether the relay closed the connection, found without reading: the TCP state (TCP_INFO) is no longer
    /// ESTABLISHED.
    static func closedByPeer(_ fd: Int32) -> Bool {
        var info = [UInt8](repeating: 0, count: 256)
        var length = socklen_t(info.count)
        let tcpInfo: Int32 = 11  // TCP_INFO (netinet/tcp.h)
        let result = info.withUnsafeMutableBytes { getsockopt(fd, Int32(IPPROTO_TCP), tcpInfo, $0.baseAddress, &length) }
        return result != 0 || info[0] != 1  // 1 = TCP_ESTABLISHED
    }

    /// Reads until the end of the response head (blocking up to `timeoutMilliseconds`); its status code, or
    /// nil (closed first, or no answer in time).
    static func readStatus(_ fd: Int32, timeoutMilliseconds: Int32 = 30_000) -> Int? {
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        let deadline = monotonicNanos() + UInt64(timeoutMilliseconds) * 1_000_000
        while monotonicNanos() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 100)
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                head.append(contentsOf: buffer[..<count])
                if let end = head.firstRange(of: Array("\r\n".utf8)) {
                    let line = String(decoding: head[..<end.lowerBound], as: UTF8.self).split(separator: " ")
                    return line.count >= 2 ? Int(line[1]) : nil
                }
            } else if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                return nil
            }
        }
        return nil
    }

    /// Sends a WebSocket upgrade for `authorization` and waits for the `101` (the bytes after it are left
    /// unread). True if upgraded.
    static func upgrade(_ fd: Int32, host: String, port: Int, authorization: String) -> Bool {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request =
            "GET /v1/ws HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nAuthorization: \(authorization)\r\n\r\n"
        guard writeAll(fd, Array(request.utf8)) else { return false }
        // Read the head byte by byte, so that no frame after it is consumed.
        var head: [UInt8] = []
        let deadline = monotonicNanos() + 10_000_000_000
        var byte: UInt8 = 0
        while monotonicNanos() < deadline {
            let count = read(fd, &byte, 1)
            if count == 1 {
                head.append(byte)
                if head.count >= 4, head.suffix(4) == Array("\r\n\r\n".utf8) {
                    return String(decoding: head.prefix(12), as: UTF8.self) == "HTTP/1.1 101"
                }
            } else if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                return false
            } else {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&poller, 1, 100)
            }
        }
        return false
    }

    /// A masked client frame (RFC 6455 §5.3): opcode 1 text, 9 ping.
    static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            bytes.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        bytes += mask
        for (index, byte) in payload.enumerated() { bytes.append(byte ^ mask[index % 4]) }
        return bytes
    }
}

/// A loop on a thread of its own until `stop()`; `step` returns how long to sleep before the next round.
final class AbuseThread: @unchecked Sendable {
    /// The nice value of attacker threads (`relay-abuse --attacker-nice`; set before any attacker starts).
    nonisolated(unsafe) static var nice: Int32 = 10

    private let stopping = NSLock()
    private var stopRequested = false
    private var finished = false
    private let done = DispatchSemaphore(value: 0)

    init(name: String, step: @escaping @Sendable () -> UInt32, cleanup: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            // Attackers yield the bench's core to the honest devices (whose latency is measured): on Linux the nice
            // value is per thread, and `who` 0 is the calling thread.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, AbuseThread.nice)
            while !isStopping { usleep(step()) }
            cleanup()
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    private var isStopping: Bool {
        stopping.withLock { stopRequested }
    }

    /// Asks the loop to end and waits until it has cleaned up (without blocking the concurrency pool).
    func stop() async {
        stopping.withLock { stopRequested = true }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.done.wait()
                continuation.resume()
            }
        }
    }
}
