#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers

/// Per-message timestamps of the delivery path, for finding where latency goes (`scripts/delivery-trace.py` joins
/// the files of all nodes). Off unless `PARLEY_RELAY_TRACE_DELIVERY` names a folder: then each relay process
/// appends lines to `<folder>/relay-<pid>.trace`. Off, a trace point costs one load of a constant.
///
/// Timestamps are CLOCK_MONOTONIC nanoseconds: one clock for every process of the machine, so the lines of two
/// nodes on one host can be joined. Lines carry ids only (account id, device id, queue sequence number), never
/// names, keys or ciphertext:
///
/// | line | written by | fields |
/// | --- | --- | --- |
/// | `B` | a node's send commit (one per batch) | called, transaction body started (connection leased, BEGIN done), writes and NOTIFY done (before COMMIT), COMMIT returned, submissions |
/// | `S` | the sending node, per entry announced to another node | `a.d.seq`, frame read (submission made), commit called, COMMIT returned |
/// | `N` | the receiving node's listener, per announced entry | `a.d.seq`, notification received |
/// | `R` | the receiving node, per entry read back | `a.d.seq`, read started, read returned |
/// | `W` | a session, per envelope written to its socket | `a.d.seq`, written |
enum DeliveryTrace {
    /// The environment variable naming the trace folder.
    static let environmentKey = "PARLEY_RELAY_TRACE_DELIVERY"
    /// Bytes buffered before they are written out (a write per few hundred lines).
    private static let flushBytes = 32 * 1024

    private static let sink: Sink? = {
        guard let folder = getenv(environmentKey).map({ String(cString: $0) }), !folder.isEmpty else { return nil }
        let path = "\(folder)/relay-\(getpid()).trace"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return nil }
        return Sink(fd: fd)
    }()

    static var isEnabled: Bool { sink != nil }

    /// CLOCK_MONOTONIC in nanoseconds (0 when tracing is off: no clock read on the hot path).
    @inline(__always)
    static func now() -> UInt64 {
        guard sink != nil else { return 0 }
        return clock()
    }

    static func clock() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// Appends a line (built only when tracing is on).
    static func line(_ text: @autoclosure () -> String) {
        guard let sink else { return }
        sink.append(text())
    }

    /// Writes out what is buffered (at a graceful stop; a killed process loses its last lines).
    static func flush() {
        sink?.flush()
    }

    static func id(_ address: DeviceAddress, _ seq: Int64) -> String {
        "\(address.accountId).\(address.deviceId).\(seq)"
    }

    private final class Sink: Sendable {
        let fd: Int32
        let buffer = NIOLockedValueBox([UInt8]())

        init(fd: Int32) { self.fd = fd }

        func append(_ text: String) {
            buffer.withLockedValue { buffer in
                buffer.append(contentsOf: text.utf8)
                buffer.append(UInt8(ascii: "\n"))
                guard buffer.count >= DeliveryTrace.flushBytes else { return }
                writeOut(&buffer)
            }
        }

        func flush() {
            buffer.withLockedValue { writeOut(&$0) }
        }

        private func writeOut(_ buffer: inout [UInt8]) {
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
            buffer.removeAll(keepingCapacity: true)
        }
    }
}
