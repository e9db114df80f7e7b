import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// POLLRDHUP (the peer shut down its side; not imported by Glibc).
private let pollReadHangUp: Int16 = 0x2000

/// Counters an attacker thread updates and the bench reads.
final class AbuseCounters: Sendable {
    private let values = NIOLockedValueBox<[String: Int]>([:])

    func add(_ name: String, _ amount: Int = 1) {
        values.withLockedValue { $0[name, default: 0] += amount }
    }

    func set(_ name: String, _ value: Int) {
        values.withLockedValue { $0[name] = value }
    }

    var snapshot: [String: Int] { values.withLockedValue { $0 } }

    /// `name value` pairs, sorted by name.
    var line: String {
        snapshot.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
}

/// Slowloris: keeps `count` connections open from `addresses` round robin, each with an incomplete request
/// (half a head that never ends, half a head with a body that never comes), one more byte every 10 s; opens a
/// new one for every connection the relay closes, at most `perSecond` new connections a second.
final class SlowlorisAttacker: @unchecked Sendable {
    let counters = AbuseCounters()
    private var sockets: [(fd: Int32, nextByte: UInt64)] = []
    private var next = 0
    private var thread: AbuseThread?

    init(host: String, port: Int, addresses: [String], count: Int, perSecond: Int) {
        thread = AbuseThread(
            name: "slowloris",
            step: { [self] in
                step(host: host, port: port, addresses: addresses, count: count, perStep: max(1, perSecond / 10))
                return 100_000
            },
            cleanup: { [self] in
                for socket in sockets { close(socket.fd) }
                sockets.removeAll()
            })
    }

    private static let partialHead = Array("GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ".utf8)
    private static let slowBody = Array(
        "POST /v1/accounts HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{".utf8)

    private func step(host: String, port: Int, addresses: [String], count: Int, perStep: Int) {
        let now = monotonicNanos()
        // Closed by the relay (deadline, eviction, refusal): replace.
        var pollers = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN) | pollReadHangUp, revents: 0) }
        if !pollers.isEmpty { _ = poll(&pollers, nfds_t(pollers.count), 0) }
        var kept: [(fd: Int32, nextByte: UInt64)] = []
        kept.reserveCapacity(sockets.count)
        for (index, socket) in sockets.enumerated() {
            let events = pollers[index].revents
            if events & (pollReadHangUp | Int16(POLLHUP) | Int16(POLLERR)) != 0 || (events & Int16(POLLIN) != 0 && !AbuseSocket.drain(socket.fd)) {
                close(socket.fd)
                counters.add("closed by relay")
                continue
            }
            var socket = socket
            if now >= socket.nextByte {
                if case .closed = AbuseSocket.write(socket.fd, [UInt8(ascii: "a")]) {
                    close(socket.fd)
                    counters.add("closed by relay")
                    continue
                }
                socket.nextByte = now + 10_000_000_000
            }
            kept.append(socket)
        }
        sockets = kept
        var opened = 0
        while sockets.count < count, opened < perStep {
            opened += 1
            let source = addresses[next % addresses.count]
            next += 1
            guard let fd = AbuseSocket.connect(host: host, port: port, source: source, timeoutMilliseconds: 500) else {
                counters.add("connect failed")
                continue
            }
            let head = next % 2 == 0 ? Self.partialHead : Self.slowBody
            guard case .wrote = AbuseSocket.write(fd, head) else {
                close(fd)
                counters.add("closed by relay")
                continue
            }
            sockets.append((fd, now + 10_000_000_000))
            counters.add("opened")
        }
        counters.set("open", sockets.count)
    }

    func stop() async { await thread?.stop() }
}

/// WebSockets that never read: connect, upgrade, then never read a byte; reconnect when the relay closes them.
final class StalledReaderAttacker: @unchecked Sendable {
    let counters = AbuseCounters()
    private var sockets: [Int32?]
    private var thread: AbuseThread?

    init(host: String, port: Int, authorizations: [String], source: String) {
        sockets = Array(repeating: nil, count: authorizations.count)
        thread = AbuseThread(
            name: "stalled-readers",
            step: { [self] in
                for (index, authorization) in authorizations.enumerated() {
                    if let fd = sockets[index], AbuseSocket.closedByPeer(fd) {
                        close(fd)
                        sockets[index] = nil
                        counters.add("closed by relay")
                    }
                    if sockets[index] == nil {
                        guard let fd = AbuseSocket.connect(host: host, port: port, source: source, receiveBuffer: 16 * 1024) else {
                            counters.add("connect failed")
                            continue
                        }
                        if AbuseSocket.upgrade(fd, host: host, port: port, authorization: authorization) {
                            sockets[index] = fd
                            counters.add("sessions")
                        } else {
                            close(fd)
                            counters.add("upgrade failed")
                        }
                    }
                }
                return 1_000_000
            },
            cleanup: { [self] in
                for fd in sockets.compactMap({ $0 }) { close(fd) }
            })
    }

    func stop() async { await thread?.stop() }
}

/// WebSockets that send WebSocket pings (125-byte payloads) as fast as the relay takes them and never read the
/// pongs; reconnect when the relay closes them.
final class PingFloodAttacker: @unchecked Sendable {
    let counters = AbuseCounters()
    private var sockets: [(fd: Int32, offset: Int)?]
    private var thread: AbuseThread?
    private let batch: [UInt8]

    init(host: String, port: Int, authorizations: [String], source: String) {
        sockets = Array(repeating: nil, count: authorizations.count)
        let ping = AbuseSocket.frame(opcode: 0x9, [UInt8](repeating: 0x50, count: 125))
        batch = Array([[UInt8]](repeating: ping, count: 256).joined())
        thread = AbuseThread(
            name: "ping-flood",
            step: { [self] in
                var progressed = false
                for (index, authorization) in authorizations.enumerated() {
                    if sockets[index] == nil {
                        guard let fd = AbuseSocket.connect(host: host, port: port, source: source, receiveBuffer: 16 * 1024) else {
                            counters.add("connect failed")
                            continue
                        }
                        guard AbuseSocket.upgrade(fd, host: host, port: port, authorization: authorization) else {
                            close(fd)
                            counters.add("upgrade failed")
                            continue
                        }
                        sockets[index] = (fd, 0)
                        counters.add("sessions")
                    }
                    guard let (fd, offset) = sockets[index] else { continue }
                    switch batch.withUnsafeBytes({ AbuseSocket.write(fd, UnsafeRawBufferPointer(rebasing: $0[offset...])) }) {
                    case .closed:
                        close(fd)
                        sockets[index] = nil
                        counters.add("closed by relay")
                    case .wrote(let count):
                        if count > 0 { progressed = true }
                        counters.add("ping bytes", count)
                        sockets[index] = (fd, (offset + count) % batch.count)
                        if count == 0, AbuseSocket.closedByPeer(fd) {
                            close(fd)
                            sockets[index] = nil
                            counters.add("closed by relay")
                        }
                    }
                }
                return progressed ? 0 : 20_000
            },
            cleanup: { [self] in
                for socket in sockets.compactMap({ $0 }) { close(socket.fd) }
            })
    }

    func stop() async { await thread?.stop() }
}

/// Queue flooding: devices that send small messages over their WebSockets at `framesPerSecond` each (the
/// relay's per-connection frame limit by default), to `victims` (offline accounts whose queues fill, and honest
/// devices, who receive and ack them). They read (and count) the answers.
final class QueueFloodAttacker: @unchecked Sendable {
    let counters = AbuseCounters()
    private var sockets: [Int32?]
    private var thread: AbuseThread?
    private var requestId: Int64 = 0
    private var sent = 0

    init(
        host: String, port: Int, authorizations: [String], victims: [String], framesPerSecond: Int, source: String
    ) {
        sockets = Array(repeating: nil, count: authorizations.count)
        // Zero bytes: never taken for a bench payload by an honest device.
        let content = Data(count: 100).base64EncodedString()
        let start = monotonicNanos()
        thread = AbuseThread(
            name: "queue-flood",
            step: { [self] in
                for (index, authorization) in authorizations.enumerated() where sockets[index] == nil {
                    guard let fd = AbuseSocket.connect(host: host, port: port, source: source) else {
                        counters.add("connect failed")
                        continue
                    }
                    if AbuseSocket.upgrade(fd, host: host, port: port, authorization: authorization) {
                        sockets[index] = fd
                    } else {
                        close(fd)
                        counters.add("upgrade failed")
                    }
                }
                // Answers: count outcomes by their markers.
                for index in sockets.indices {
                    guard let fd = sockets[index] else { continue }
                    let open = AbuseSocket.drain(fd) { bytes in
                        self.counters.add("accepted", Self.occurrences(of: Self.sendResult, in: bytes))
                        self.counters.add("queueFull", Self.occurrences(of: Self.queueFull, in: bytes))
                        self.counters.add("rateLimited", Self.occurrences(of: Self.rateLimited, in: bytes))
                    }
                    if !open {
                        close(fd)
                        sockets[index] = nil
                        counters.add("closed by relay")
                    }
                }
                // Sends due at the rate, round robin over the flooders and victims.
                let due = Int(Double(monotonicNanos() - start) / 1e9 * Double(framesPerSecond * authorizations.count))
                while sent < due {
                    let index = sent % sockets.count
                    sent += 1
                    guard let fd = sockets[index] else { continue }
                    requestId += 1
                    let victim = victims[Int(requestId) % victims.count]
                    let text =
                        #"{"type":"send","to":"\#(victim)","messages":[{"deviceId":1,"registrationId":4242,"type":1,"content":"\#(content)"}],"requestId":\#(requestId)}"#
                    if case .wrote(let count) = AbuseSocket.write(fd, AbuseSocket.frame(opcode: 0x1, Array(text.utf8))), count > 0 {
                        counters.add("sends")
                    }
                }
                return 10_000
            },
            cleanup: { [self] in
                for fd in sockets.compactMap({ $0 }) { close(fd) }
            })
    }

    private static let sendResult = Array(#""sendResult""#.utf8)
    private static let queueFull = Array(#""queueFull""#.utf8)
    private static let rateLimited = Array(#""rateLimited""#.utf8)

    private static func occurrences(of needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int {
        var count = 0
        var from = 0
        while let at = BenchSocket.find(bytes, needle, from: from) {
            count += 1
            from = at + needle.count
        }
        return count
    }

    func stop() async { await thread?.stop() }
}

/// JSON bombs: unauthenticated `POST /v1/accounts` bodies of `bodyBytes` made of many small objects, sent as
/// fast as the relay takes them, one connection per bomb, from `sources` round robin; counts answers by status.
final class JSONBombAttacker: @unchecked Sendable {
    let counters = AbuseCounters()
    private var thread: AbuseThread?

    init(host: String, port: Int, bodyBytes: Int, source: String) {
        // `[{"a":0},{"a":0},...,{"a":0}]`, exactly `bodyBytes` long (padded with spaces before the `]`).
        let object = Array(#"{"a":0},"#.utf8)
        let objects = max(1, (bodyBytes - 9) / object.count)
        let chunk = Array([[UInt8]](repeating: object, count: 8_192).joined())
        let head = Array(
            ("POST /v1/accounts HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(bodyBytes)\r\n\r\n[").utf8)
        let tailLength = bodyBytes - 1 - objects * object.count
        let tail = Array(#"{"a":0}"#.utf8) + [UInt8](repeating: 0x20, count: max(0, tailLength)) + Array("]".utf8)
        thread = AbuseThread(
            name: "json-bomb",
            step: { [self] in
                guard let fd = AbuseSocket.connect(host: host, port: port, source: source) else {
                    counters.add("connect failed")
                    return 100_000
                }
                defer { close(fd) }
                var ok = AbuseSocket.writeAll(fd, head)
                var remaining = objects - 1
                while ok, remaining > 0 {
                    let count = min(remaining, 8_192)
                    ok = AbuseSocket.writeAll(fd, count == 8_192 ? chunk : Array(chunk[..<(count * object.count)]))
                    remaining -= count
                }
                if ok { ok = AbuseSocket.writeAll(fd, tail) }
                counters.add("bombs")
                if !ok { counters.add("cut short by the relay") }
                if let status = AbuseSocket.readStatus(fd) {
                    counters.add("HTTP \(status)")
                } else {
                    counters.add("no answer")
                }
                return 0
            },
            cleanup: {})
    }

    func stop() async { await thread?.stop() }
}
