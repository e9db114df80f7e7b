import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// A device that stops reading its socket: the relay stops writing to it (the socket is not writable), keeps
/// no more than `maxPendingEventsPerConnection` live envelopes for it in memory (the rest is re-read from the
/// store), and once the device reads again it gets every envelope, in order, once.
@Suite("A device that does not read", .timeLimit(.minutes(3)))
struct StalledReaderTests {
    /// A WebSocket client on a plain non-blocking socket, so that the test decides when it reads.
    final class RawWebSocket: @unchecked Sendable {
        let fd: Int32
        private var buffer: [UInt8] = []

        init(port: Int, authorization: String) throws {
            // A small receive buffer, so that the relay's side fills up soon.
            fd = try connectLoopbackSocket(port: port, receiveBuffer: 16 * 1024)
            let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let request =
                "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nAuthorization: \(authorization)\r\n\r\n"
            let bytes = Array(request.utf8)
            guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                close(fd)
                throw TestFailure("write")
            }
        }

        deinit { close(fd) }

        /// Reads what is there without waiting; false once the connection is closed.
        private func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    buffer.append(contentsOf: chunk.prefix(count))
                } else if count == 0 {
                    return false
                } else {
                    return errno == EAGAIN || errno == EWOULDBLOCK
                }
            }
        }

        /// Waits for the `101` response to the upgrade.
        func handshake(timeout: Duration = .seconds(10)) async throws {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                guard fill() else { throw TestFailure("closed during the handshake") }
                if let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                    let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                    buffer.removeSubrange(..<end.upperBound)
                    guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("upgrade refused: \(head)") }
                    return
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            throw TestFailure("no upgrade response")
        }

        /// The next text frame's JSON, or nil on timeout or close.
        func nextFrame(timeout: Duration = .seconds(10)) async throws -> ServerFrame? {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let payload = takeFrame() {
                    if let frame = try? WireCoding.decoder().decode(ServerFrame.self, from: Data(payload)) { return frame }
                    continue  // ping or other control frame
                }
                guard fill() else { return nil }
                if takeFramePossible() { continue }
                try await Task.sleep(for: .milliseconds(5))
            }
            return nil
        }

        private func takeFramePossible() -> Bool { frameLength() != nil }

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
    }

    @Test func everyEnvelopeArrivesInOrderOnceTheDeviceReadsAgain() async throws {
        var limits = RelayLimits()
        limits.maxPendingEventsPerConnection = 32  // (1,024 by default) folds early, with little data
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 77))
        let stalled = try RawWebSocket(port: relay.port, authorization: bob.authorizationHeader)
        try await stalled.handshake()
        #expect(try await stalled.nextFrame()?.type == .queueEmpty)

        // Bob reads nothing while alice sends more than the relay keeps in memory for him (and more bytes than
        // the sockets buffer): the outbox blocks, then folds live envelopes into a store read.
        let count = 300
        for index in 0..<count {
            // 32 KB each (the relay writes them base64-encoded): ~13 MB in all, more than the sockets buffer.
            var content = Data(count: 32_000)
            content.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(index).bigEndian) { Data($0) })
            let reply = try await relay.http.call(
                .PUT, "/v1/messages/\(bob.account)", alice,
                body: SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 77, type: 1, content: content)]))
            #expect(reply.status == 200)
        }
        // The relay did stop holding live envelopes for bob.
        let metrics = String(decoding: try await relay.http.call(.GET, "/metrics").body, as: UTF8.self)
        let folds = metrics.split(separator: "\n").first { $0.hasPrefix("parley_relay_outbox_folds_total ") }
        #expect((folds?.split(separator: " ").last.flatMap { Int($0) } ?? 0) > 0)

        // Now bob reads: every envelope, in sending order, once.
        var received: [UInt64] = []
        var ids = Set<UUID>()
        while received.count < count, let frame = try await stalled.nextFrame(timeout: .seconds(20)) {
            guard let envelope = frame.envelope else { continue }
            #expect(ids.insert(envelope.id).inserted)
            received.append(envelope.content.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
        }
        #expect(received == (0..<UInt64(count)).map { $0 })
        #expect(try await stalled.nextFrame(timeout: .milliseconds(500)) == nil)
        try await relay.stop()
    }

    /// A burst of sends over one WebSocket reaches a reading device in sending order: the group commit answers
    /// and delivers batches in commit order, also when one flush loop ends and the next begins.
    @Test func aBurstOfSendsArrivesInOrder() async throws {
        var limits = RelayLimits()
        limits.clientFramesPerSecond = 100_000
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 78))
        let bobWS = try await relay.connect(bob)
        #expect(try await bobWS.backlog().isEmpty)
        let aliceWS = try await relay.connect(alice)
        #expect(try await aliceWS.backlog().isEmpty)
        let count = 1_000
        for index in 0..<count {
            var content = Data(count: 64)
            content.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(index).bigEndian) { Data($0) })
            try aliceWS.send(
                .send(
                    requestId: Int64(index), to: bob.account,
                    SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 78, type: 1, content: content)])))
        }
        var received: [UInt64] = []
        while received.count < count, let frame = await bobWS.next(timeout: .seconds(20)) {
            guard let envelope = frame.envelope else { continue }
            received.append(envelope.content.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
        }
        #expect(received == (0..<UInt64(count)).map { $0 })
        await aliceWS.close()
        await bobWS.close()
        try await relay.stop()
    }
}
