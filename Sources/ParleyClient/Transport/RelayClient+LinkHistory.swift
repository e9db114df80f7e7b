import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyWire

/// The link history archive endpoints (Specs/relay-protocol.md §4.5.1): opaque sealed bytes, streamed both ways.
extension RelayClient {
    /// The time one archive transfer may take: a minute, plus the size at 32 KiB/s (a slow mobile line);
    /// 128 MiB gets about 70 minutes.
    static func historyTransferTimeout(bytes: Int) -> TimeAmount {
        .seconds(60 + Int64(bytes / (32 * 1024)))
    }

    /// Existing device: uploads the sealed archive of link `code`, `size` bytes in `pieceCount` pieces made on
    /// demand by `piece` (in order, one at a time: the upload is never built whole). `progress` is told the bytes
    /// handed to the connection so far.
    public func uploadLinkHistory(
        code: String, size: Int, pieceCount: Int, piece: @escaping @Sendable (Int) throws -> Data,
        progress: (@Sendable (Int) -> Void)? = nil
    ) async throws {
        let segment = try Self.pathSegment(code)
        var request = HTTPClientRequest(url: baseURL + "/v1/devices/links/\(segment)/history")
        request.method = .PUT
        if let credentials { request.headers.add(name: "Authorization", value: credentials.authorizationHeader) }
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.body = .stream(PieceSequence(count: pieceCount, make: piece, progress: progress), length: .known(Int64(size)))
        let response = try await http.execute(request, timeout: Self.historyTransferTimeout(bytes: size))
        let bytes = Data((try await response.body.collect(upTo: 64 * 1024)).readableBytesView)
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else { throw Self.error(status: status, body: bytes, authenticated: true) }
    }

    /// New device (pending credentials): streams its link's archive to `consume`, at most `maxBytes` (more is
    /// `.badResponse`). A `404` (no archive) throws `.rejected(404, ...)`.
    public func downloadLinkHistory(maxBytes: Int, consume: (ByteBuffer) throws -> Void) async throws {
        var request = HTTPClientRequest(url: baseURL + "/v1/devices/links/history")
        request.method = .GET
        if let credentials { request.headers.add(name: "Authorization", value: credentials.authorizationHeader) }
        let response = try await http.execute(request, timeout: Self.historyTransferTimeout(bytes: maxBytes))
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let bytes = Data((try await response.body.collect(upTo: 64 * 1024)).readableBytesView)
            throw Self.error(status: status, body: bytes, authenticated: true)
        }
        var received = 0
        for try await buffer in response.body {
            received += buffer.readableBytes
            guard received <= maxBytes else { throw RelayClientError.badResponse("history archive longer than announced") }
            try consume(buffer)
        }
    }

    /// New device: the archive arrived and was imported; the relay may drop it.
    public func acknowledgeLinkHistory() async throws {
        try await performNoContent(.DELETE, "/v1/devices/links/history", body: nil)
    }
}

/// The pieces of an upload, made one at a time as the connection takes them.
struct PieceSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let count: Int
    let make: @Sendable (Int) throws -> Data
    let progress: (@Sendable (Int) -> Void)?

    struct AsyncIterator: AsyncIteratorProtocol {
        let sequence: PieceSequence
        var index = 0
        var sent = 0

        mutating func next() async throws -> ByteBuffer? {
            guard index < sequence.count else { return nil }
            let data = try sequence.make(index)
            index += 1
            sent += data.count
            sequence.progress?(sent)
            return ByteBuffer(bytes: data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(sequence: self) }
}
