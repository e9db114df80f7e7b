import Foundation
import Hummingbird
import Logging
import ParleyWire

/// Body decoding and JSON responses shared by the route groups.
enum HTTPSupport {
    /// Reads and decodes a request body of at most `limit.bytes`: refused at once when `Content-Length` says
    /// more, and as soon as more arrives otherwise (chunked bodies); parsed once, arrays bounded while parsing.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: BodyLimit) async throws -> T {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > limit.bytes {
            throw RelayError.payloadTooLarge("request body larger than \(limit.bytes) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit.bytes)
        } catch {
            throw RelayError.payloadTooLarge("request body larger than \(limit.bytes) bytes")
        }
        return try StrictJSON.decode(T.self, bytes: Array(buffer.readableBytesView), limits: limit.parse)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try WireCoding.encoder().encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func noContent() -> Response {
        Response(status: .noContent)
    }

    static func uint32Parameter(_ context: some RequestContext, _ name: String) throws -> UInt32 {
        guard let text = context.parameters.get(name), let value = UInt32(text) else {
            throw RelayError.invalidField("\(name) must be an unsigned 32-bit integer")
        }
        return value
    }

    static func uuidParameter(_ context: some RequestContext, _ name: String) throws -> UUID {
        guard let text = context.parameters.get(name), let value = UUID(uuidString: text) else {
            throw RelayError.invalidField("\(name) must be a UUID")
        }
        return value
    }
}

/// Turns every failure into a typed JSON error: `RelayError` as is, anything unexpected as `internalError` (logged).
struct ErrorMappingMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as RelayError {
            throw error
        } catch let error as HTTPError {
            switch error.status {
            case .notFound: throw RelayError.notFound("no such route")
            case .contentTooLarge: throw RelayError.payloadTooLarge("request body too large")
            case .methodNotAllowed: throw RelayError.notFound("method not allowed on this route")
            default: throw RelayError.malformedRequest("bad request")
            }
        } catch {
            // Paths can carry link codes: log the method and error type only.
            logger.error("request failed", metadata: ["method": "\(request.method)", "error": "\(PostgresRelayStore.summary(error))"])
            throw RelayError.internalError
        }
    }
}
