import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// A JSON key given twice in one object is refused (a finding of the `wire-frame` fuzz target:
/// Foundation's decoder kept the last value while the relay's fast frame decoder refused the
/// frame, and another reader could keep the first): over HTTP and as a WebSocket-shaped frame.
@Suite("Duplicate JSON keys", .timeLimit(.minutes(3)))
struct DuplicateKeyTests {
    @Test func aRequestBodyWithARepeatedKeyIsRefused() async throws {
        let relay = try await TestRelay.start()
        let keys = String(decoding: try WireCoding.encoder().encode(Fixtures.keys()), as: UTF8.self)
        let name = Fixtures.uniqueName("dup")
        let reply = try await relay.http.raw(
            .POST, "/v1/accounts", body: Data(#"{"name":"\#(name)","name":"\#(name)x","device":\#(keys)}"#.utf8))
        #expect(reply.status == 400)
        #expect(reply.error?.code == .malformedRequest)
        #expect(reply.error?.message.contains("duplicate field name") == true)
        // The same body without the repetition registers.
        let accepted = try await relay.http.raw(.POST, "/v1/accounts", body: Data(#"{"name":"\#(name)","device":\#(keys)}"#.utf8))
        #expect(accepted.status == 201)
        try await relay.stop()
    }

    @Test func aFrameWithARepeatedKeyIsRefusedLikeAnyMalformedFrame() throws {
        // Through the relay's whole frame decision (fast path, then the strict decoder with the frame limits).
        let frame = Array(#"{"type":"ack","ids":[],"ids":["01890A5D-AC96-774B-BCCE-B302099A8057"]}"#.utf8)
        #expect(FastWire.decodeClientFrame(frame) == nil)
        #expect(ClientFrameDecoding.decode(frame) == .failure(.invalid(.malformed("duplicate field ids"))))
        // Escapes do not hide a repetition.
        let escaped = Array(#"{"type":"ack","ids":[],"\u0069ds":[]}"#.utf8)
        #expect(ClientFrameDecoding.decode(escaped) == .failure(.invalid(.malformed("duplicate field ids"))))
        // Nor does nesting: a repeated key inside a message of a batch.
        let nested = Data(
            #"{"messages":[{"deviceId":1,"deviceId":2,"registrationId":2,"type":3,"content":"AA=="}]}"#.utf8)
        #expect(throws: RelayError.malformedRequest("duplicate field deviceId at messages[0]")) {
            try StrictJSON.decode(SendMessageRequest.self, from: nested, limits: JSONParseLimits(maxArrayElements: 6))
        }
    }
}
