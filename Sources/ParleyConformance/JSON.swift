import Foundation

/// A thin typed view over JSONSerialization output, with errors that name the missing field.
struct JSONValue {
    let raw: Any?
    let path: String

    init(_ raw: Any?, path: String = "$") {
        self.raw = raw
        self.path = path
    }

    static func parse(_ data: Data) throws -> JSONValue {
        JSONValue(try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
    }

    subscript(_ key: String) -> JSONValue {
        JSONValue((raw as? [String: Any])?[key], path: "\(path).\(key)")
    }

    var isNull: Bool { raw == nil || raw is NSNull }
    var exists: Bool { !isNull }

    func string() throws -> String {
        guard let s = raw as? String else { throw VectorError.field(path, "a string") }
        return s
    }

    func int() throws -> Int {
        if let n = raw as? NSNumber, !(raw is Bool) { return n.intValue }
        if let i = raw as? Int { return i }
        throw VectorError.field(path, "an integer")
    }

    func uint32() throws -> UInt32 {
        let v = try int()
        guard v >= 0, v <= Int(UInt32.max) else { throw VectorError.field(path, "a 32-bit unsigned integer") }
        return UInt32(v)
    }

    func bool() throws -> Bool {
        guard let b = raw as? Bool else { throw VectorError.field(path, "a boolean") }
        return b
    }

    func hex() throws -> [UInt8] {
        guard let bytes = [UInt8](hex: try string()) else { throw VectorError.field(path, "hex") }
        return bytes
    }

    func array() throws -> [JSONValue] {
        guard let a = raw as? [Any] else { throw VectorError.field(path, "an array") }
        return a.enumerated().map { JSONValue($0.element, path: "\(path)[\($0.offset)]") }
    }
}

/// Why a vector could not be run or did not match.
enum VectorError: Error, CustomStringConvertible {
    case field(String, String)
    case mismatch(String)

    var description: String {
        switch self {
        case .field(let path, let expected): return "\(path) is not \(expected)"
        case .mismatch(let what): return what
        }
    }
}
