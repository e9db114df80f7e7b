import Foundation
import ParleyWire

#if canImport(Glibc)
import Glibc
#endif

/// A device's WebSocket on a plain non-blocking socket, so that the test decides when (and whether) it reads:
/// a device that does not read, or that sends while it does not read.
final class RawWebSocket: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects and sends the upgrade request (`authorization` header, or `query` such as `?ticket=...`).
    /// `receiveBuffer` is small by default, so that the relay's side fills up soon when the test does not read.
    init(
        port: Int, authorization: String?, query: String = "", receiveBuffer: Int32 = 16 * 1024, source: String? = nil
    ) throws {
        fd = try connectLoopbackSocket(port: port, receiveBuffer: receiveBuffer, source: source)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        var request =
            "GET /v1/ws\(query) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        if let authorization { request += "Authorization: \(authorization)\r\n" }
        request += "\r\n"
        guard LoopbackIO.write(fd, Array(request.utf8)) == .wrote(request.utf8.count) else {
            close(fd)
            throw TestFailure("write")
        }
    }

    deinit { close(fd) }

    /// Reads what is there without waiting; false once the connection is closed.
    private func fill() -> Bool {
        while true {
            switch LoopbackIO.read(fd, into: &buffer) {
            case .data: continue
            case .nothingYet: return true
            case .closed: return false
            }
        }
    }

    /// Waits for the response to the upgrade: its status line (`HTTP/1.1 101 ...` when accepted).
    func handshakeStatus(timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let open = fill()
            if let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                return String(head.prefix { $0 != "\r" })
            }
            guard open else { throw TestFailure("closed during the handshake") }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("no upgrade response")
    }

    /// Waits for the `101` response to the upgrade.
    func handshake(timeout: Duration = .seconds(30)) async throws {
        let status = try await handshakeStatus(timeout: timeout)
        guard status.hasPrefix("HTTP/1.1 101") else { throw TestFailure("upgrade refused: \(status)") }
    }

    /// The next text frame's JSON, or nil on timeout or close.
    func nextFrame(timeout: Duration = .seconds(30)) async throws -> ServerFrame? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let payload = takeFrame() {
                if let frame = try? WireCoding.decoder().decode(ServerFrame.self, from: Data(payload)) { return frame }
                continue  // ping or other control frame
            }
            guard fill() else { return nil }
            if frameLength() != nil { continue }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// Header and payload length of the first buffered frame, if complete.
    private func frameLength() -> (header: Int, payload: Int)? {
        guard buffer.count >= 2 else { return nil }
        var length = Int(buffer[1] & 0x7F)
        var header = 2
        if length == 126 {
            guard buffer.count >= 4 else { return nil }
            length = Int(buffer[2]) << 8 | Int(buffer[3])
            header = 4
        } else if length == 127 {
            guard buffer.count >= 10 else { return nil }
            length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
            header = 10
        }
        guard buffer.count >= header + length else { return nil }
        return (header, length)
    }

    /// Removes the first complete frame; returns its payload if it is a text frame.
    private func takeFrame() -> [UInt8]? {
        guard let (header, length) = frameLength() else { return nil }
        let opcode = buffer[0] & 0x0F
        let payload = Array(buffer[header..<(header + length)])
        buffer.removeSubrange(..<(header + length))
        return opcode == 0x1 ? payload : []
    }

    // MARK: writing (client frames are masked, RFC 6455 §5.3)

    /// One masked frame with `opcode` (1 text, 9 ping, 10 pong).
    static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            bytes.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(0x80 | 126)
            bytes.append(UInt8(payload.count >> 8))
            bytes.append(UInt8(payload.count & 0xFF))
        } else {
            bytes.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        bytes.append(contentsOf: mask)
        for (index, byte) in payload.enumerated() { bytes.append(byte ^ mask[index % 4]) }
        return bytes
    }

    /// Writes a frame without waiting; `.closed` once the relay has closed the connection.
    func write(opcode: UInt8, _ payload: [UInt8]) -> LoopbackIO.WriteResult {
        LoopbackIO.write(fd, Self.frame(opcode: opcode, payload))
    }

    /// Writes a client frame as JSON text without waiting.
    func write(_ frame: ClientFrame) throws -> LoopbackIO.WriteResult {
        write(opcode: 0x1, Array(try WireCoding.encoder().encode(frame)))
    }

    /// Whether the relay has closed the connection (without reading what it sent).
    var closedByPeer: Bool { LoopbackIO.closedByPeer(fd) }
}
