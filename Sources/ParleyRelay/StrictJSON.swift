import Foundation
import ParleyWire

/// Decodes request bodies and frames in one pass over the input, refusing unknown fields.
///
/// The input is read once into a `JSONTape` (no object tree: one 16-byte node per value), with the route's
/// `JSONParseLimits` checked while reading: an array longer than the route can use, or nesting deeper than any
/// wire type, stops the parse at that element. The wire type then decodes from the tape; every member of
/// every object it opened must have been read by it (or carry `null`), else the input had an unknown field.
enum StrictJSON {
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, limits: JSONParseLimits) throws(RelayError) -> T {
        try decode(type, bytes: [UInt8](data), limits: limits)
    }

    static func decode<T: Decodable>(_ type: T.Type, bytes: [UInt8], limits: JSONParseLimits) throws(RelayError) -> T {
        let tape: JSONTape
        do {
            tape = try JSONTape(bytes, limits: limits)
        } catch {
            switch error {
            case .invalid(let offset): throw .malformedRequest("invalid JSON at byte \(offset)")
            case .tooDeep: throw .malformedRequest("JSON nested deeper than \(JSONParseLimits.maxDepth) levels")
            case .tooManyElements(let limit): throw .tooManyItems("an array has more than \(limit) elements")
            case .tooManyMembers(let limit): throw .malformedRequest("an object has more than \(limit) fields")
            }
        }
        let state = StrictJSONDecoderState(tape: tape)
        let value: T
        do {
            value = try StrictJSONDecoder.decode(T.self, state: state, node: 0, path: [])
        } catch let DecodingError.keyNotFound(key, context) {
            throw .malformedRequest("missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .malformedRequest("wrong type at \(path(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .malformedRequest("null at \(path(context.codingPath))")
        } catch let DecodingError.dataCorrupted(context) {
            throw .malformedRequest(
                context.codingPath.isEmpty ? context.debugDescription : "invalid value at \(path(context.codingPath))")
        } catch {
            throw .malformedRequest("invalid JSON")
        }
        if let unknown = state.firstUnreadMember() {
            throw .unknownField("unknown field \(unknown)")
        }
        return value
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            .replacingOccurrences(of: ".[", with: "[")
    }
}
