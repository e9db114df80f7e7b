import Foundation
import ParleyWire

/// Decodes request bodies and frames, refusing unknown fields: a decoded value is re-encoded, and every
/// key of the input (at any depth) must appear in that canonical form or carry `null`.
enum StrictJSON {
    static func decode<T: Codable>(_ type: T.Type, from data: Data) throws(RelayError) -> T {
        let value: T
        do {
            value = try WireCoding.decoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw .malformedRequest("missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .malformedRequest("wrong type at \(path(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .malformedRequest("null at \(path(context.codingPath))")
        } catch let DecodingError.dataCorrupted(context) {
            throw .malformedRequest(context.codingPath.isEmpty ? "invalid JSON" : "invalid value at \(path(context.codingPath))")
        } catch {
            throw .malformedRequest("invalid JSON")
        }
        guard let input = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
            let canonicalData = try? WireCoding.encoder().encode(value),
            let canonical = try? JSONSerialization.jsonObject(with: canonicalData, options: [.fragmentsAllowed])
        else { throw .malformedRequest("invalid JSON") }
        if let unknown = firstUnknownKey(input, canonical, path: "") {
            throw .unknownField("unknown field \(unknown)")
        }
        return value
    }

    private static func firstUnknownKey(_ input: Any, _ canonical: Any, path: String) -> String? {
        if let object = input as? [String: Any] {
            let known = canonical as? [String: Any] ?? [:]
            for (key, value) in object {
                let here = path.isEmpty ? key : "\(path).\(key)"
                guard let canonicalValue = known[key] else {
                    if value is NSNull { continue }
                    return here
                }
                if let found = firstUnknownKey(value, canonicalValue, path: here) { return found }
            }
        } else if let array = input as? [Any], let canonicalArray = canonical as? [Any] {
            for (index, (element, canonicalElement)) in zip(array, canonicalArray).enumerated() {
                if let found = firstUnknownKey(element, canonicalElement, path: "\(path)[\(index)]") { return found }
            }
        }
        return nil
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
