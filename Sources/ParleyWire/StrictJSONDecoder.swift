import Foundation

/// A `Decoder` over a `JSONTape`: the wire types decode straight from the parsed input, with the conventions
/// of `WireCoding` (`Data` as standard base64 with padding, `UUID` as a string). It records which members of
/// each object a type read; a member nobody read is an unknown field (`StrictJSON`).
final class StrictJSONDecoderState {
    let tape: JSONTape
    /// Per node: read by a keyed container (only meaningful for object member values).
    var read: [Bool]
    /// Objects opened as keyed containers, in the order they were opened, with their coding paths.
    var objects: [(node: Int, path: [any CodingKey])] = []

    init(tape: JSONTape) {
        self.tape = tape
        self.read = [Bool](repeating: false, count: tape.nodes.count)
    }

    /// The first member of an opened object that no type read and whose value is not `null`, as a dotted path.
    func firstUnreadMember() -> String? {
        for (node, path) in objects {
            var index = node + 1
            for _ in 0..<Int(tape.nodes[node].count) {
                let key = index
                let value = index + 1
                if !read[value], tape.nodes[value].kind != .null {
                    let name = tape.string(key) ?? "?"
                    return (path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue } + [name])
                        .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
                }
                index = tape.next(after: value)
            }
        }
        return nil
    }
}

struct StrictJSONDecoder: Decoder {
    let state: StrictJSONDecoderState
    let node: Int
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    private var tape: JSONTape { state.tape }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard tape.nodes[node].kind == .object else {
            throw DecodingError.typeMismatch(
                [String: Any].self, .init(codingPath: codingPath, debugDescription: "expected an object"))
        }
        return KeyedDecodingContainer(try KeyedContainer<Key>(state: state, node: node, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard tape.nodes[node].kind == .array else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "expected an array"))
        }
        return UnkeyedContainer(state: state, node: node, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueContainer(state: state, node: node, codingPath: codingPath)
    }

    /// Decodes the value at `node`: the special cases of `WireCoding`'s JSONDecoder, then `T(from:)`.
    static func decode<T: Decodable>(_ type: T.Type, state: StrictJSONDecoderState, node: Int, path: [any CodingKey])
        throws -> T
    {
        let tape = state.tape
        if type == Data.self {
            guard tape.nodes[node].kind == .string else {
                throw DecodingError.typeMismatch(Data.self, .init(codingPath: path, debugDescription: "expected base64"))
            }
            // Standard base64 with padding, no whitespace (as JSONDecoder's default `.base64`). Encoders may escape
            // `/` as `\/` (Foundation's JSONEncoder does): such a string is unescaped first.
            let text = tape.nodes[node].flag ? tape.string(node).map { Data($0.utf8) } : Data(tape.text(node))
            guard let text, let data = Data(base64Encoded: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "invalid base64"))
            }
            if let value = data as? T { return value }
        }
        if type == UUID.self {
            guard let text = tape.string(node) else {
                throw DecodingError.typeMismatch(UUID.self, .init(codingPath: path, debugDescription: "expected a UUID"))
            }
            guard let uuid = UUID(uuidString: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "invalid UUID"))
            }
            if let value = uuid as? T { return value }
        }
        return try T(from: StrictJSONDecoder(state: state, node: node, codingPath: path))
    }
}

/// A coding key for array positions in coding paths.
private struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: StrictJSONDecoderState
    let codingPath: [any CodingKey]
    /// Member value nodes, by key text.
    private let members: [String: Int]

    init(state: StrictJSONDecoderState, node: Int, codingPath: [any CodingKey]) throws {
        self.state = state
        self.codingPath = codingPath
        let tape = state.tape
        var members: [String: Int] = [:]
        var index = node + 1
        for _ in 0..<Int(tape.nodes[node].count) {
            guard let key = tape.string(index) else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "invalid key"))
            }
            guard members.updateValue(index + 1, forKey: key) == nil else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: codingPath, debugDescription: "duplicate field \(key)"))
            }
            index = tape.next(after: index + 1)
        }
        self.members = members
        state.objects.append((node, codingPath))
    }

    var allKeys: [Key] { members.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool {
        guard let value = members[key.stringValue] else { return false }
        state.read[value] = true
        return true
    }

    private func value(_ key: Key) throws -> Int {
        guard let value = members[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        state.read[value] = true
        return value
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        state.tape.nodes[try value(key)].kind == .null
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try value(type, key) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try value(type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(type, key) }

    private func value<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T {
        let node = try value(key)
        let path = codingPath + [key]
        if state.tape.nodes[node].kind == .null {
            throw DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "null"))
        }
        return try StrictJSONDecoder.decode(type, state: state, node: node, path: path)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let node = members[key.stringValue] else { return nil }
        state.read[node] = true
        if state.tape.nodes[node].kind == .null { return nil }
        return try StrictJSONDecoder.decode(type, state: state, node: node, path: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try StrictJSONDecoder(state: state, node: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try StrictJSONDecoder(state: state, node: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "superDecoder is not supported"))
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try superDecoder()
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let state: StrictJSONDecoderState
    let codingPath: [any CodingKey]
    let count: Int?
    private(set) var currentIndex = 0
    private var node: Int

    init(state: StrictJSONDecoderState, node: Int, codingPath: [any CodingKey]) {
        self.state = state
        self.codingPath = codingPath
        self.count = Int(state.tape.nodes[node].count)
        self.node = node + 1
    }

    var isAtEnd: Bool { currentIndex >= (count ?? 0) }

    private mutating func advance() throws -> Int {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Any.self, .init(codingPath: codingPath + [IndexKey(currentIndex)], debugDescription: "end of array"))
        }
        let current = node
        node = state.tape.next(after: current)
        currentIndex += 1
        return current
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        guard state.tape.nodes[node].kind == .null else { return false }
        _ = try advance()
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type) }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next(type) }

    private mutating func next<T: Decodable>(_ type: T.Type) throws -> T {
        let path = codingPath + [IndexKey(currentIndex)]
        if !isAtEnd, state.tape.nodes[node].kind == .null {
            throw DecodingError.valueNotFound(type, .init(codingPath: path, debugDescription: "null"))
        }
        let current = try advance()
        return try StrictJSONDecoder.decode(type, state: state, node: current, path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        let path = codingPath + [IndexKey(currentIndex)]
        return try StrictJSONDecoder(state: state, node: try advance(), codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let path = codingPath + [IndexKey(currentIndex)]
        return try StrictJSONDecoder(state: state, node: try advance(), codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "superDecoder is not supported"))
    }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let state: StrictJSONDecoderState
    let node: Int
    let codingPath: [any CodingKey]

    private var tape: JSONTape { state.tape }
    private var kind: JSONTape.Kind { tape.nodes[node].kind }

    private func mismatch(_ type: Any.Type, _ what: String) -> DecodingError {
        DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(what)"))
    }

    func decodeNil() -> Bool { kind == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        switch kind {
        case .true: return true
        case .false: return false
        default: throw mismatch(type, "a boolean")
        }
    }

    func decode(_ type: String.Type) throws -> String {
        guard let value = tape.string(node) else { throw mismatch(type, "a string") }
        return value
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard kind == .number, let value = Double(String(decoding: tape.text(node), as: UTF8.self)), value.isFinite
        else { throw mismatch(type, "a number") }
        return value
    }

    func decode(_ type: Float.Type) throws -> Float {
        let float = Float(try decode(Double.self))
        guard float.isFinite else { throw mismatch(type, "a number") }
        return float
    }

    /// An integer: integer syntax only (no fraction or exponent), in the type's range.
    private func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        guard kind == .number, !tape.nodes[node].flag else { throw mismatch(type, "an integer") }
        let text = tape.text(node)
        var value: I = 0
        let negative = text.first == UInt8(ascii: "-")
        for digit in text.dropFirst(negative ? 1 : 0) {
            let (times, overflowTimes) = value.multipliedReportingOverflow(by: 10)
            let digitValue = I(digit - UInt8(ascii: "0"))
            let (next, overflowAdd) =
                negative ? times.subtractingReportingOverflow(digitValue) : times.addingReportingOverflow(digitValue)
            guard !overflowTimes, !overflowAdd else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: codingPath, debugDescription: "number does not fit \(type)"))
            }
            value = next
        }
        return value
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try StrictJSONDecoder.decode(type, state: state, node: node, path: codingPath)
    }
}
