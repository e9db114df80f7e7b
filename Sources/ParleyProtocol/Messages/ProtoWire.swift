/// The few protobuf wire-format pieces the pairwise message layouts need (Specs/protocol.md §5.2,
/// §5.3), written out by hand so that a message is built and read in place, without the
/// intermediate `Data` values and copies of the generated swift-protobuf code.
///
/// Writing produces exactly what swift-protobuf produces for these messages (fields in ascending
/// tag order, minimal varints). Reading is a fast path, not a second decoder: it accepts only
/// messages made of the schema's own fields, each with its declared wire type and a one-byte tag,
/// varints of at most five bytes and lengths that fit. For any other input it returns nil and the
/// caller decodes with swift-protobuf, which therefore still decides everything unusual (unknown
/// fields, groups, long varints, wrong wire types, truncation). On the inputs the fast path
/// accepts, swift-protobuf would return the same values: the last occurrence of a field wins,
/// and a uint32 is the low 32 bits of its varint.
enum ProtoWire {
    /// swift-protobuf's (and protobuf's) limit: an encoded message is below 2 GiB.
    static let maxMessageSize = 0x7FFF_FFFF

    static let wireVarint: UInt8 = 0
    static let wireLengthDelimited: UInt8 = 2

    /// The one-byte tag of field `number` (1...15) with `wireType`.
    @inline(__always)
    static func tag(_ number: UInt8, _ wireType: UInt8) -> UInt8 { number << 3 | wireType }

    // MARK: writing

    /// Bytes the varint encoding of `value` takes (1...5).
    @inline(__always)
    static func varintSize(_ value: UInt32) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    /// Writes `value` as a varint at `p`; returns the bytes written.
    @inline(__always)
    static func writeVarint(_ value: UInt32, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var v = value
        var n = 0
        while v >= 0x80 {
            p[n] = UInt8(truncatingIfNeeded: v) | 0x80
            v >>= 7
            n += 1
        }
        p[n] = UInt8(v)
        return n + 1
    }

    // MARK: reading

    /// The wire type of the first occurrence of field `number` in a protobuf message, or nil when
    /// the field is absent or the message cannot be walked that far (a bad tag, varint or length,
    /// or a group). Used only to choose between two schemas; the chosen decoder decides the rest.
    static func firstWireType(ofField number: UInt64, in bytes: UnsafeRawBufferPointer) -> UInt8? {
        var offset = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while offset < bytes.count, shift < 64 {
                let b = bytes[offset]
                offset += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while offset < bytes.count {
            guard let key = varint() else { return nil }
            let wireType = UInt8(key & 7)
            if key >> 3 == number { return wireType }
            switch wireType {
            case 0:
                guard varint() != nil else { return nil }
            case 1:
                offset += 8
            case 2:
                guard let length = varint(), length <= UInt64(bytes.count - offset) else { return nil }
                offset += Int(length)
            case 5:
                offset += 4
            default:
                return nil
            }
            guard offset <= bytes.count else { return nil }
        }
        return nil
    }

    /// A forward-only reader over one protobuf message. Every method returns nil instead of
    /// reading past the end or accepting anything outside the fast path's subset.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        private(set) var offset: Int

        init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
            self.bytes = bytes
            self.offset = offset
        }

        var atEnd: Bool { offset >= bytes.count }

        /// The next byte (a one-byte tag), or nil at the end.
        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        /// A varint of at most five bytes, as swift-protobuf reads it: the low 64 bits of the
        /// value (a uint32 field keeps the low 32 of those). Nil when truncated or longer.
        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            var i = offset
            while i < bytes.count, shift < 35 {
                let b = bytes[i]
                value |= UInt64(b & 0x7F) << shift
                i += 1
                if b & 0x80 == 0 {
                    offset = i
                    return value
                }
                shift += 7
            }
            return nil
        }

        /// A length-delimited field's body (after its tag): the range it occupies in `bytes`.
        mutating func lengthDelimited() -> Range<Int>? {
            guard let length = varint(), length < UInt64(ProtoWire.maxMessageSize), length <= UInt64(bytes.count - offset) else { return nil }
            let start = offset
            offset += Int(length)
            return start..<offset
        }
    }
}
