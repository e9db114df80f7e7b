/// Reads a fuzz input as a stream of small choices; reading past the end yields zeros, so every
/// input is a complete program (libFuzzer's structure-aware style without a custom mutator).
struct FuzzBytes {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { index >= bytes.count }

    mutating func byte() -> UInt8 {
        defer { index += 1 }
        return index < bytes.count ? bytes[index] : 0
    }

    mutating func u16() -> Int { Int(byte()) << 8 | Int(byte()) }

    /// A value in `0..<count` (0 when `count` is 0).
    mutating func choose(_ count: Int) -> Int { count == 0 ? 0 : Int(byte()) % count }
}

/// A minimal protobuf writer (varints and length-delimited fields), independent of the code
/// under test, for building forged messages.
enum ProtoWriter {
    static func varint(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }

    static func field(_ number: Int, varint value: UInt64) -> [UInt8] {
        varint(UInt64(number << 3)) + varint(value)
    }

    static func field(_ number: Int, bytes value: [UInt8]) -> [UInt8] {
        varint(UInt64(number << 3 | 2)) + varint(UInt64(value.count)) + value
    }

    /// A PreKeySignalMessage (version byte 0x33, then WireFormat.proto's fields in libsignal's order).
    static func preKeySignalMessage(
        registrationId: UInt32, preKeyId: UInt32?, signedPreKeyId: UInt32, baseKey: [UInt8], identityKey: [UInt8],
        message: [UInt8]
    ) -> [UInt8] {
        var out: [UInt8] = [0x33]
        if let preKeyId { out += field(1, varint: UInt64(preKeyId)) }
        out += field(2, bytes: baseKey)
        out += field(3, bytes: identityKey)
        out += field(4, bytes: message)
        out += field(5, varint: UInt64(registrationId))
        out += field(6, varint: UInt64(signedPreKeyId))
        return out
    }
}
