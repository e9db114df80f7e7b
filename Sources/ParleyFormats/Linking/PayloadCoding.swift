import ParleyCrypto

/// Big-endian writer; `wipe()` zeroes what it wrote (the buffer holds the identity private key).
struct PayloadWriter {
    private(set) var buffer: [UInt8] = []

    init(capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    var count: Int { buffer.count }

    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u16(_ value: UInt16) { buffer += [UInt8(value >> 8), UInt8(value & 0xFF)] }
    mutating func u32(_ value: UInt32) {
        buffer += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
    mutating func i64(_ value: Int64) {
        let bits = UInt64(bitPattern: value)
        for shift in stride(from: 56, through: 0, by: -8) { buffer.append(UInt8((bits >> UInt64(shift)) & 0xFF)) }
    }
    mutating func bytes(_ bytes: [UInt8]) { buffer += bytes }
    mutating func raw(_ bytes: UnsafeRawBufferPointer) { buffer.append(contentsOf: bytes) }
    mutating func append(_ other: PayloadWriter) { buffer += other.buffer }

    mutating func string(_ text: String, max: Int) throws(LinkError) {
        let utf8 = Array(text.utf8)
        guard utf8.count <= max else { throw .payloadMalformed("a text field is longer than \(max) bytes") }
        u32(UInt32(utf8.count))
        buffer += utf8
    }

    mutating func optionalString(_ text: String?, max: Int) throws(LinkError) {
        guard let text else { u8(0); return }
        u8(1)
        try string(text, max: max)
    }

    mutating func patchU32(_ value: UInt32, at offset: Int) {
        buffer[offset] = UInt8(value >> 24)
        buffer[offset + 1] = UInt8((value >> 16) & 0xFF)
        buffer[offset + 2] = UInt8((value >> 8) & 0xFF)
        buffer[offset + 3] = UInt8(value & 0xFF)
    }

    func secret() -> SecretBytes { SecretBytes(copying: buffer) }

    mutating func wipe() {
        for index in buffer.indices { buffer[index] = 0 }
        buffer.removeAll()
    }
}

/// Big-endian reader over the decrypted payload; every read is bounds-checked.
struct PayloadReader {
    private let raw: UnsafeRawBufferPointer
    private var offset = 0

    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    var isAtEnd: Bool { offset == raw.count }
    var remaining: Int { raw.count - offset }

    private mutating func take(_ count: Int) throws(LinkError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw .payloadMalformed("truncated") }
        let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)])
        offset += count
        return slice
    }

    mutating func u8() throws(LinkError) -> UInt8 { try take(1)[0] }
    mutating func u16() throws(LinkError) -> UInt16 {
        let b = try take(2)
        return UInt16(b[0]) << 8 | UInt16(b[1])
    }
    mutating func u32() throws(LinkError) -> UInt32 {
        let b = try take(4)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
    mutating func i64() throws(LinkError) -> Int64 {
        let b = try take(8)
        var bits: UInt64 = 0
        for byte in b { bits = bits << 8 | UInt64(byte) }
        return Int64(bitPattern: bits)
    }
    mutating func bool() throws(LinkError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw .payloadMalformed("a flag is not 0 or 1")
        }
    }
    mutating func bytes(_ count: Int) throws(LinkError) -> [UInt8] { Array(try take(count)) }

    /// The 32 private key bytes, copied straight into a `PrivateKey` (no array copy left behind).
    mutating func privateKey() throws(LinkError) -> PrivateKey {
        let b = try take(PrivateKey.size)
        let secret = SecretBytes(count: PrivateKey.size) { out in out.copyMemory(from: b) }
        guard let key = try? PrivateKey(bytes: secret) else {
            throw .payloadMalformed("identity private key")
        }
        return key
    }

    /// An element count, refused when the remaining bytes cannot hold that many elements.
    mutating func count(minimumElementSize: Int) throws(LinkError) -> Int {
        let value = Int(try u32())
        guard value <= remaining / minimumElementSize else { throw .payloadMalformed("count exceeds the payload") }
        return value
    }

    mutating func string(max: Int) throws(LinkError) -> String {
        let length = Int(try u32())
        guard length <= max else { throw .payloadMalformed("a text field is longer than \(max) bytes") }
        let b = try take(length)
        guard let text = String(validating: b, as: UTF8.self) else { throw .payloadMalformed("text is not UTF-8") }
        return text
    }

    mutating func optionalString(max: Int) throws(LinkError) -> String? {
        guard try bool() else { return nil }
        return try string(max: max)
    }
}
