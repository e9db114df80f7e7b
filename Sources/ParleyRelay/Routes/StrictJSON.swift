import Foundation
import ParleyWire

/// Decodes request bodies and frames in one pass over the input, refusing unknown fields and repeated keys,
/// with the route's `JSONParseLimits` checked while reading (`StrictWireDecoder` in ParleyWire, where the fuzz
/// targets reach it without the relay), with the relay's error type.
enum StrictJSON {
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, limits: JSONParseLimits) throws(RelayError) -> T {
        try decode(type, bytes: [UInt8](data), limits: limits)
    }

    static func decode<T: Decodable>(_ type: T.Type, bytes: [UInt8], limits: JSONParseLimits) throws(RelayError) -> T {
        do {
            return try StrictWireDecoder.decode(T.self, bytes: bytes, limits: limits)
        } catch {
            throw RelayError(error)
        }
    }
}

extension RelayError {
    /// The relay's answer to an input `StrictWireDecoder` refused.
    init(_ error: WireDecodingError) {
        switch error {
        case .malformed(let message): self = .malformedRequest(message)
        case .unknownField(let message): self = .unknownField(message)
        case .tooManyItems(let message): self = .tooManyItems(message)
        }
    }
}
