import Foundation

/// Why a JSON body or frame was refused by `StrictWireDecoder`.
public enum WireDecodingError: Error, Equatable, Sendable {
    /// Not JSON, nested too deep, an object with too many members, a repeated key, a missing or null
    /// required field, or a value of the wrong type; says where.
    case malformed(String)
    /// A field the type does not have (at any depth), named by its path.
    case unknownField(String)
    /// An array longer than the caller's `JSONParseLimits.maxArrayElements`.
    case tooManyItems(String)
}

/// Decodes request bodies and frames in one pass over the input, refusing unknown fields.
///
/// The input is read once into a `JSONTape` (no object tree: one 16-byte node per value), with the caller's
/// `JSONParseLimits` checked while reading: an array longer than the route can use, or nesting deeper than any
/// wire type, stops the parse at that element. The wire type then decodes from the tape; every member of
/// every object it opened must have been read by it (or carry `null`), else the input had an unknown field.
/// A key repeated in one object is refused (Foundation's reader keeps the last value, another reader could
/// keep the first: a parser differential).
///
/// The relay decodes every request body and every frame the fast path (`FastFrameDecoder`) does not take with
/// it (`StrictJSON` maps the errors). It lives here, with no dependency beyond Foundation, so that the fuzz
/// targets exercise exactly this decoder without the relay's dependency closure.
public enum StrictWireDecoder {
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, limits: JSONParseLimits)
        throws(WireDecodingError) -> T
    {
        try decode(type, bytes: [UInt8](data), limits: limits)
    }

    public static func decode<T: Decodable>(_ type: T.Type, bytes: [UInt8], limits: JSONParseLimits)
        throws(WireDecodingError) -> T
    {
        let tape: JSONTape
        do {
            tape = try JSONTape(bytes, limits: limits)
        } catch {
            switch error {
            case .invalid(let offset): throw .malformed("invalid JSON at byte \(offset)")
            case .tooDeep: throw .malformed("JSON nested deeper than \(JSONParseLimits.maxDepth) levels")
            case .tooManyElements(let limit): throw .tooManyItems("an array has more than \(limit) elements")
            case .tooManyMembers(let limit): throw .malformed("an object has more than \(limit) fields")
            }
        }
        let state = StrictJSONDecoderState(tape: tape)
        let value: T
        do {
            value = try StrictJSONDecoder.decode(T.self, state: state, node: 0, path: [])
        } catch let DecodingError.keyNotFound(key, context) {
            throw .malformed("missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .malformed("wrong type at \(path(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .malformed("null at \(path(context.codingPath))")
        } catch let DecodingError.dataCorrupted(context) {
            throw .malformed(
                context.codingPath.isEmpty
                    ? context.debugDescription : "\(context.debugDescription) at \(path(context.codingPath))")
        } catch {
            throw .malformed("invalid JSON")
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

/// Why a device's WebSocket text frame was refused by `ClientFrameDecoding`.
public enum ClientFrameDecodingError: Error, Equatable, Sendable {
    /// Longer than `ClientFrameDecoding.maxFrameBytes`.
    case tooLarge(limit: Int)
    /// Refused by `StrictWireDecoder`.
    case invalid(WireDecodingError)
}

/// How the relay decodes a device's WebSocket text frame: bounded in size, the common `ack`/`send` shapes on
/// the fast path (`FastFrameDecoder`), everything else by `StrictWireDecoder` with `parseLimits`. The relay's
/// session and the `relay-frame` fuzz target both call `decode`.
public enum ClientFrameDecoding {
    /// Max bytes of one WebSocket message sent by a device (Specs/relay-protocol.md §2): an ack of `maxAckIds`
    /// ids (~40 bytes each) fits; larger sends go over HTTP.
    public static let maxFrameBytes = 64 * 1024
    /// Max ids in one ack frame: several delivery pages acked at once, within `maxFrameBytes`.
    public static let maxAckIds = 1_000
    /// Parse limits of a client frame: its longest array is an `ack`'s ids.
    public static let parseLimits = JSONParseLimits(maxArrayElements: maxAckIds)

    public static func decode(_ bytes: some Collection<UInt8>) -> Result<ClientFrame, ClientFrameDecodingError> {
        guard bytes.count <= maxFrameBytes else { return .failure(.tooLarge(limit: maxFrameBytes)) }
        if let frame = FastFrameDecoder.decodeClientFrame(bytes) { return .success(frame) }
        do {
            return .success(try StrictWireDecoder.decode(ClientFrame.self, bytes: Array(bytes), limits: parseLimits))
        } catch {
            return .failure(.invalid(error))
        }
    }
}
