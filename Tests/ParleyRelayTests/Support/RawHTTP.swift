import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.1 over a plain loopback socket, byte for byte as the test writes it: paths the HTTP client would
/// normalize, a `Content-Length` the body never reaches, a chunked body that never ends. The socket is
/// non-blocking and waiting sleeps the task: the relay under test runs on the same (small) thread pool.
final class RawHTTP {
    struct Response {
        let status: Int
        let head: String
        let body: Data
    }

    private let fd: Int32
    private var closed = false

    init(port: Int) throws {
        fd = try connectLoopbackSocket(port: port)
    }

    deinit { close() }

    /// Closes the connection (before the relay stops, so that it has no request left to finish).
    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Writes all of `bytes`, waiting while the socket is not writable (false: the peer closed it, or `timeout`).
    @discardableResult
    func write(_ bytes: Data, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress!.advanced(by: offset), bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                offset += written
            } else if written < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                guard ContinuousClock.now < deadline else { return false }
                try? await Task.sleep(for: .milliseconds(5))
            } else {
                return false
            }
        }
        return true
    }

    func write(_ text: String) async -> Bool { await write(Data(text.utf8)) }

    /// Reads one response (head and a `Content-Length` body), or nil if none completes before `timeout`.
    func readResponse(timeout: Duration = .seconds(20)) async -> Response? {
        let deadline = ContinuousClock.now + timeout
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while ContinuousClock.now < deadline {
            if let response = Self.parse(received) { return response }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                return Self.parse(received)
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                try? await Task.sleep(for: .milliseconds(5))
            } else {
                return Self.parse(received)
            }
        }
        return Self.parse(received)
    }

    private static func parse(_ data: Data) -> Response? {
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[data.startIndex..<end.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var length = 0
        for line in lines.dropFirst() {
            let pair = line.split(separator: ":", maxSplits: 1)
            if pair.count == 2, pair[0].lowercased() == "content-length" {
                length = Int(pair[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let body = data[end.upperBound...]
        guard body.count >= length else { return nil }
        return Response(status: status, head: head, body: Data(body.prefix(length)))
    }
}
