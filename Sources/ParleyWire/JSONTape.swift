/// What one parse may cost, enforced while the input is read (not after a tree was built): a request
/// body or frame that breaks a limit is refused at the offending element, whatever follows it.
public struct JSONParseLimits: Sendable, Equatable {
    /// Max nesting of arrays and objects. The deepest wire type nests 4 levels (a batch request's device ids).
    public static let maxDepth = 16
    /// Max members of one object. The widest wire type has 11 fields (`ServerFrame`).
    public static let maxObjectMembers = 32

    /// Max elements of any one array of the input: the largest array the route can legitimately carry.
    public var maxArrayElements: Int

    public init(maxArrayElements: Int) {
        self.maxArrayElements = maxArrayElements
    }
}

/// Why an input is not acceptable JSON (or breaks a parse limit).
public enum JSONParseError: Error, Equatable, Sendable {
    /// Not JSON (RFC 8259): the byte offset where reading stopped.
    case invalid(offset: Int)
    /// Arrays or objects nested deeper than `JSONParseLimits.maxDepth`.
    case tooDeep
    /// An array with more elements than the route allows.
    case tooManyElements(limit: Int)
    /// An object with more members than any wire type has.
    case tooManyMembers(limit: Int)
}

/// A JSON document read once into a flat list of nodes (a "tape"), in document order. Values are not copied:
/// strings and numbers are byte ranges of the input, decoded only when a field is read
/// (`StrictJSONDecoder`). An object node is followed by its members as key, value, key, value...; an array node
/// by its elements; `end` of a container is the index of the node after its last descendant.
///
/// Memory is one node (16 bytes) per JSON value plus the input; work is linear in the input and stops at the
/// first violation of `JSONParseLimits`.
struct JSONTape {
    enum Kind: UInt8 {
        case object, array, string, number, `true`, `false`, null
    }

    struct Node {
        var kind: Kind
        /// Strings: the text contains backslash escapes. Numbers: it has a fraction or an exponent.
        var flag: Bool
        /// Containers: number of elements (arrays) or members (objects).
        var count: Int32
        /// Strings and numbers: byte range of the text (strings without their quotes). Containers: `start` is
        /// unused and `end` is the index of the next node after the container's subtree.
        var start: Int32
        var end: Int32
    }

    let bytes: [UInt8]
    private(set) var nodes: [Node] = []

    /// Reads `bytes` (one JSON value, surrounded by optional whitespace).
    init(_ bytes: [UInt8], limits: JSONParseLimits) throws(JSONParseError) {
        guard bytes.count < Int(Int32.max) else { throw .invalid(offset: 0) }
        self.bytes = bytes
        var parser = Parser(bytes: bytes, limits: limits)
        parser.skipWhitespace()
        try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw .invalid(offset: parser.position) }
        nodes = parser.nodes
    }

    /// The index of the node after `index` and all its descendants.
    func next(after index: Int) -> Int {
        let node = nodes[index]
        switch node.kind {
        case .object, .array: return Int(node.end)
        default: return index + 1
        }
    }

    /// The raw bytes of a string or number node.
    func text(_ index: Int) -> ArraySlice<UInt8> {
        let node = nodes[index]
        return bytes[Int(node.start)..<Int(node.end)]
    }

    /// The value of a string node (escapes resolved).
    func string(_ index: Int) -> String? {
        let node = nodes[index]
        guard node.kind == .string else { return nil }
        let raw = text(index)
        if !node.flag { return String(decoding: raw, as: UTF8.self) }  // validated while parsing
        return Self.unescape(raw)
    }

    /// Whether a string node equals `key` (compared bytewise after resolving escapes).
    func stringEquals(_ index: Int, _ key: String) -> Bool {
        let node = nodes[index]
        guard node.kind == .string else { return false }
        if !node.flag {
            return text(index).elementsEqual(key.utf8)
        }
        return string(index) == key
    }

    /// Resolves the escapes of a string's text (already validated by the parser).
    private static func unescape(_ raw: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = raw.startIndex
        while index < raw.endIndex {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                index += 1
                continue
            }
            let escape = raw[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex4(raw, index) else { return nil }
                index += 4
                if (0xD800...0xDBFF).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard index + 6 <= raw.endIndex, raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u"),
                        let low = hex4(raw, index + 2), (0xDC00...0xDFFF).contains(low)
                    else { return nil }
                    index += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    return nil
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                UTF8.encode(unicode) { out.append($0) }
            default: out.append(escape)  // " \ /
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex4(_ raw: ArraySlice<UInt8>, _ at: Int) -> UInt32? {
        guard at + 4 <= raw.endIndex else { return nil }
        var value: UInt32 = 0
        for byte in raw[at..<(at + 4)] {
            guard let digit = hexValue(byte) else { return nil }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    fileprivate static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Recursive descent over the bytes (depth bounded by `JSONParseLimits.maxDepth`), appending nodes.
private struct Parser {
    let bytes: [UInt8]
    let limits: JSONParseLimits
    var position = 0
    var nodes: [JSONTape.Node] = []

    init(bytes: [UInt8], limits: JSONParseLimits) {
        self.bytes = bytes
        self.limits = limits
        // Most bodies hold a value per ~8 bytes; reserving a little avoids early regrowth.
        nodes.reserveCapacity(min(bytes.count / 8 + 8, 4_096))
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private func fail() -> JSONParseError { .invalid(offset: position) }

    mutating func value(depth: Int) throws(JSONParseError) {
        guard let byte = current else { throw fail() }
        switch byte {
        case UInt8(ascii: "{"): try object(depth: depth + 1)
        case UInt8(ascii: "["): try array(depth: depth + 1)
        case UInt8(ascii: "\""): try string()
        case UInt8(ascii: "t"): try literal("true", .true)
        case UInt8(ascii: "f"): try literal("false", .false)
        case UInt8(ascii: "n"): try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw fail()
        }
    }

    private mutating func literal(_ word: StaticString, _ kind: JSONTape.Kind) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw fail() }
        let matches = word.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[position + $0] == expected[$0] }
        }
        guard matches else { throw fail() }
        nodes.append(.init(kind: kind, flag: false, count: 0, start: Int32(position), end: Int32(position + count)))
        position += count
    }

    private mutating func object(depth: Int) throws(JSONParseError) {
        guard depth <= JSONParseLimits.maxDepth else { throw .tooDeep }
        let index = nodes.count
        nodes.append(.init(kind: .object, flag: false, count: 0, start: Int32(position), end: 0))
        position += 1
        skipWhitespace()
        var members = 0
        if current == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                members += 1
                guard members <= JSONParseLimits.maxObjectMembers else {
                    throw .tooManyMembers(limit: JSONParseLimits.maxObjectMembers)
                }
                guard current == UInt8(ascii: "\"") else { throw fail() }
                try string()
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw fail() }
                position += 1
                skipWhitespace()
                try value(depth: depth)
                guard try another(before: UInt8(ascii: "}")) else { break }
            }
        }
        nodes[index].count = Int32(members)
        nodes[index].end = Int32(nodes.count)
    }

    private mutating func array(depth: Int) throws(JSONParseError) {
        guard depth <= JSONParseLimits.maxDepth else { throw .tooDeep }
        let index = nodes.count
        nodes.append(.init(kind: .array, flag: false, count: 0, start: Int32(position), end: 0))
        position += 1
        skipWhitespace()
        var elements = 0
        if current == UInt8(ascii: "]") {
            position += 1
        } else {
            while true {
                elements += 1
                guard elements <= limits.maxArrayElements else { throw .tooManyElements(limit: limits.maxArrayElements) }
                try value(depth: depth)
                guard try another(before: UInt8(ascii: "]")) else { break }
            }
        }
        nodes[index].count = Int32(elements)
        nodes[index].end = Int32(nodes.count)
    }

    /// After an object member or array element: true when `,` says another follows, false when
    /// `closer` ends the container (consumed); anything else is an error.
    @inline(__always)
    private mutating func another(before closer: UInt8) throws(JSONParseError) -> Bool {
        skipWhitespace()
        if current == UInt8(ascii: ",") {
            position += 1
            skipWhitespace()
            return true
        }
        guard current == closer else { throw fail() }
        position += 1
        return false
    }

    /// A string: no raw control characters, valid escapes, valid UTF-8 (RFC 8259 §7, §8.1).
    private mutating func string() throws(JSONParseError) {
        position += 1  // the opening quote
        let start = position
        var escaped = false
        while true {
            guard let byte = current else { throw fail() }
            switch byte {
            case UInt8(ascii: "\""):
                nodes.append(.init(kind: .string, flag: escaped, count: 0, start: Int32(start), end: Int32(position)))
                position += 1
                return
            case UInt8(ascii: "\\"):
                escaped = true
                guard position + 1 < bytes.count else { throw fail() }
                switch bytes[position + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position += 2
                case UInt8(ascii: "u"):
                    guard position + 6 <= bytes.count,
                        bytes[(position + 2)..<(position + 6)].allSatisfy({ JSONTape.hexValue($0) != nil })
                    else { throw fail() }
                    position += 6
                default:
                    throw fail()
                }
            case 0x00..<0x20:
                throw fail()
            case 0x00..<0x80:
                position += 1
            default:
                try utf8Sequence(byte)
            }
        }
    }

    /// One multi-byte UTF-8 sequence starting with `lead` (no overlongs, surrogates or code points above U+10FFFF).
    private mutating func utf8Sequence(_ lead: UInt8) throws(JSONParseError) {
        let length: Int
        var lowerSecond: UInt8 = 0x80
        var upperSecond: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lowerSecond = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upperSecond = 0x9F
        case 0xF0: length = 4; lowerSecond = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upperSecond = 0x8F
        default: throw fail()
        }
        guard position + length <= bytes.count else { throw fail() }
        let second = bytes[position + 1]
        guard second >= lowerSecond, second <= upperSecond else { throw fail() }
        for offset in 2..<max(length, 2) where !(0x80...0xBF).contains(bytes[position + offset]) {
            throw fail()
        }
        position += length
    }

    /// A number (RFC 8259 §6): `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func number() throws(JSONParseError) {
        let start = position
        var integral = true
        if current == UInt8(ascii: "-") { position += 1 }
        guard let first = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw fail() }
        position += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if current == UInt8(ascii: ".") {
            integral = false
            position += 1
            guard try digitsFollow() else { throw fail() }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            integral = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard try digitsFollow() else { throw fail() }
        }
        nodes.append(.init(kind: .number, flag: !integral, count: 0, start: Int32(start), end: Int32(position)))
    }

    private mutating func skipDigits() {
        while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
    }

    private mutating func digitsFollow() throws(JSONParseError) -> Bool {
        let before = position
        skipDigits()
        return position > before
    }
}
