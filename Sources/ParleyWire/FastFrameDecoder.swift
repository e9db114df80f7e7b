import Foundation

/// The relay's fast decoder for the two hot client frames (`ack` and `send`): a hand-written JSON
/// reader over UTF-8 bytes, with no tape and no `Decoder` machinery: a few microseconds per frame less
/// than `StrictWireDecoder` on the relay's hottest path.
///
/// It is deliberately narrower than the wire format: it accepts only the common, canonical shape of
/// the two frames (known keys, each at most once, integers without fraction or exponent, strings
/// without escapes). Anything else returns nil and the caller falls back to `StrictWireDecoder`,
/// which gives the exact error or accepts the unusual-but-valid input. So a frame this decoder
/// accepts is one `StrictWireDecoder` accepts with the same value (the `relay-frame` fuzz target
/// checks exactly that).
public enum FastFrameDecoder {
    /// Parses the canonical 36-character form (either case), as `UUID(uuidString:)` accepts it; nil otherwise.
    public static func parseUUID(_ text: some Collection<UInt8>) -> UUID? {
        guard text.count == 36 else { return nil }
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let ok = withUnsafeMutableBytes(of: &bytes) { out -> Bool in
            var position = 0
            var high: UInt8?
            var index = 0
            for character in text {
                defer { position += 1 }
                if position == 8 || position == 13 || position == 18 || position == 23 {
                    guard character == UInt8(ascii: "-") else { return false }
                    continue
                }
                let value: UInt8
                switch character {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character - UInt8(ascii: "A") + 10
                default: return false
                }
                if let first = high {
                    out[index] = first << 4 | value
                    index += 1
                    high = nil
                } else {
                    high = value
                }
            }
            return index == 16
        }
        return ok ? UUID(uuid: bytes) : nil
    }

    /// A client frame of type `ack` or `send` in canonical shape, or nil (use `StrictWireDecoder`).
    public static func decodeClientFrame(_ bytes: some Collection<UInt8>) -> ClientFrame? {
        var parser = Parser(bytes: Array(bytes))
        guard let frame = parser.clientFrame(), parser.atEnd() else { return nil }
        return frame
    }

    /// A minimal JSON reader over UTF-8 bytes; every failure is "not the fast shape" (nil).
    struct Parser {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipSpace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x0A, 0x0D, 0x09: index += 1
                default: return
                }
            }
        }

        mutating func atEnd() -> Bool {
            skipSpace()
            return index == bytes.count
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            skipSpace()
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func peek() -> UInt8? {
            skipSpace()
            return index < bytes.count ? bytes[index] : nil
        }

        /// A string without escapes, as its raw bytes.
        mutating func rawString() -> ArraySlice<UInt8>? {
            guard consume(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return bytes[start..<(index - 1)]
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
                index += 1
            }
            return nil
        }

        mutating func string() -> String? {
            guard let raw = rawString() else { return nil }
            guard let text = String(validating: raw, as: UTF8.self) else { return nil }
            return text
        }

        mutating func integer() -> Int64? {
            skipSpace()
            var negative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
                negative = true
                index += 1
            }
            let start = index
            var value: Int64 = 0
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                let digit = Int64(bytes[index] - UInt8(ascii: "0"))
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(digit)
                guard !o1, !o2 else { return nil }
                value = sum
                index += 1
            }
            guard index > start else { return nil }
            // Leading zeros, fractions and exponents: not the fast shape.
            if index - start > 1, bytes[start] == UInt8(ascii: "0") { return nil }
            if index < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index]) {
                return nil
            }
            return negative ? -value : value
        }

        mutating func null() -> Bool {
            skipSpace()
            guard bytes.count - index >= 4, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l")
            else { return false }
            index += 4
            return true
        }

        /// Iterates the members of an object; `body` reads the value of each key and returns false to fail.
        /// Duplicate keys fail.
        mutating func object(_ body: (inout Parser, ArraySlice<UInt8>) -> Bool) -> Bool {
            guard consume(UInt8(ascii: "{")) else { return false }
            if consume(UInt8(ascii: "}")) { return true }
            var seen: [ArraySlice<UInt8>] = []
            while true {
                guard let key = rawString(), !seen.contains(key), consume(UInt8(ascii: ":")) else { return false }
                seen.append(key)
                guard body(&self, key) else { return false }
                if consume(UInt8(ascii: ",")) { continue }
                return consume(UInt8(ascii: "}"))
            }
        }

        /// An array of at most the frame parse limit's elements (a longer one is left to the strict decoder,
        /// which refuses it with `tooManyItems`, so the fast path accepts nothing the strict one refuses).
        mutating func array(_ element: (inout Parser) -> Bool) -> Bool {
            guard consume(UInt8(ascii: "[")) else { return false }
            if consume(UInt8(ascii: "]")) { return true }
            var count = 0
            while true {
                count += 1
                guard count <= ClientFrameDecoding.parseLimits.maxArrayElements, element(&self) else { return false }
                if consume(UInt8(ascii: ",")) { continue }
                return consume(UInt8(ascii: "]"))
            }
        }

        mutating func uint32() -> UInt32? {
            guard let value = integer(), let result = UInt32(exactly: value) else { return nil }
            return result
        }

        mutating func uuid() -> UUID? {
            guard let raw = rawString() else { return nil }
            return FastFrameDecoder.parseUUID(raw)
        }

        mutating func base64() -> Data? {
            guard let raw = rawString() else { return nil }
            return Data(base64Encoded: Data(raw))
        }

        mutating func deviceMessages() -> [OutgoingDeviceMessage]? {
            var result: [OutgoingDeviceMessage] = []
            let ok = array { parser in
                var deviceId: UInt32?
                var registrationId: UInt32?
                var type: Int?
                var content: Data?
                let ok = parser.object { parser, key in
                    switch String(decoding: key, as: UTF8.self) {
                    case "deviceId": deviceId = parser.uint32()
                    case "registrationId": registrationId = parser.uint32()
                    case "type": type = parser.integer().flatMap { Int(exactly: $0) }
                    case "content": content = parser.base64()
                    default: return false
                    }
                    return true
                }
                guard ok, let deviceId, let registrationId, let type, let content else { return false }
                result.append(
                    OutgoingDeviceMessage(deviceId: deviceId, registrationId: registrationId, type: type, content: content))
                return true
            }
            return ok ? result : nil
        }

        mutating func clientFrame() -> ClientFrame? {
            var type: FrameType?
            var ids: [UUID]?
            var to: String?
            var requestId: Int64?
            var messages: [OutgoingDeviceMessage]?
            var own: [OutgoingDeviceMessage]?
            var clientTimestamp: Int64?
            var failed = false
            let ok = object { parser, key in
                switch String(decoding: key, as: UTF8.self) {
                case "type":
                    guard let text = parser.string(), let value = FrameType(rawValue: text) else { return false }
                    type = value
                case "ids":
                    var list: [UUID] = []
                    let ok = parser.array { parser in
                        guard let id = parser.uuid() else { return false }
                        list.append(id)
                        return true
                    }
                    guard ok else { return false }
                    ids = list
                case "to":
                    guard let value = parser.string() else { return false }
                    to = value
                case "requestId":
                    guard let value = parser.integer() else { return false }
                    requestId = value
                case "messages":
                    guard let value = parser.deviceMessages() else { return false }
                    messages = value
                case "ownDeviceMessages":
                    guard let value = parser.deviceMessages() else { return false }
                    own = value
                case "clientTimestamp":
                    if parser.null() { return true }
                    guard let value = parser.integer() else { return false }
                    clientTimestamp = value
                default:
                    failed = true
                    return false
                }
                return true
            }
            guard ok, !failed, let type else { return nil }
            switch type {
            case .ack:
                guard let ids, to == nil, requestId == nil, messages == nil, own == nil, clientTimestamp == nil else {
                    return nil
                }
                return ClientFrame(type: .ack, ids: ids)
            case .send:
                guard ids == nil else { return nil }
                return ClientFrame(
                    type: .send, to: to, requestId: requestId, messages: messages, ownDeviceMessages: own,
                    clientTimestamp: clientTimestamp)
            default:
                return nil
            }
        }
    }
}
