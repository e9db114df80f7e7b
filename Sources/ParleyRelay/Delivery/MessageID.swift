import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Message ids: UUID version 7 (RFC 9562), a 48-bit Unix millisecond timestamp followed by random bits.
///
/// Ids the relay creates within one millisecond sort after those of the previous one, so new message rows
/// go to the right edge of the `message` table's B-tree instead of a random leaf page: a commit of 2,000
/// messages then dirties (and writes to the WAL, and fsyncs) a few dozen pages rather than up to 2,000. To a
/// client an id stays opaque; what it reveals (the time the relay stored the message) is already in the
/// envelope's `serverTimestamp`.
enum MessageID {
    static func make(unixMillis: Int64) -> UUID {
        var random = SystemRandomNumberGenerator()
        return make(unixMillis: unixMillis, using: &random)
    }

    static func make(unixMillis: Int64, using generator: inout some RandomNumberGenerator) -> UUID {
        let time = UInt64(clamping: max(0, unixMillis)) & 0xFFFF_FFFF_FFFF
        let random = (generator.next() as UInt64, generator.next() as UInt64)
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &bytes) { out in
            // Bytes 0-5: the timestamp, big-endian. Bytes 6-15: random, then the version and variant bits.
            withUnsafeBytes(of: time.bigEndian) { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[2...])) }
            withUnsafeBytes(of: random) {
                UnsafeMutableRawBufferPointer(rebasing: out[6...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<10]))
            }
            out[6] = 0x70 | out[6] & 0x0F  // version 7
            out[8] = 0x80 | out[8] & 0x3F  // variant 10
        }
        return UUID(uuid: bytes)
    }
}

/// Random numbers for many message ids at once, from the C library's user-space generator
/// (`SystemRandomNumberGenerator` makes a `getrandom` system call per value; a send batch makes thousands of ids).
struct RandomPool: RandomNumberGenerator {
    private var values: [UInt64] = []

    mutating func next() -> UInt64 {
        if values.isEmpty { refill() }
        return values.removeLast()
    }

    private mutating func refill() {
        var fresh = [UInt64](repeating: 0, count: 64)
        // glibc's arc4random_buf: a ChaCha20 generator in user space, seeded and reseeded by the kernel.
        fresh.withUnsafeMutableBytes { bytes in
            if let base = bytes.baseAddress { arc4random_buf(base, bytes.count) }
        }
        values = fresh
    }
}
