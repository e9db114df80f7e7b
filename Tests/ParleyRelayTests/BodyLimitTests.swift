import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, item 3: request bodies are bounded per route (a registration needs a few KiB), refused as soon as
/// `Content-Length` or the streamed bytes say more, parsed once, with array lengths checked while parsing.
@Suite("Request body limits", .timeLimit(.minutes(3)))
struct BodyLimitTests {
    static func errorCode(_ response: RawHTTP.Response) -> ErrorCode? {
        try? WireCoding.decoder().decode(ErrorResponse.self, from: response.body).code
    }

    /// The attack of the issue: a 7.9 MiB unauthenticated registration. The relay answers 413 from the head alone,
    /// before the body arrives (the test never sends it).
    @Test func oversizedRegistrationIsRefusedFromItsContentLength() async throws {
        let relay = try await TestRelay.start()
        let client = try RawHTTP(port: relay.port)
        let length = 7_900_000
        #expect(await client.write(
            "POST /v1/accounts HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: \(length)\r\n\r\n[{}"))
        let response = try #require(await client.readResponse())
        #expect(response.status == 413)
        #expect(Self.errorCode(response) == .payloadTooLarge)
        #expect(response.head.lowercased().contains("content-type: application/json"))
        client.close()
        try await relay.stop()
    }

    /// Without a length (chunked), the relay stops reading once the body passes the route's bound.
    @Test func chunkedRegistrationIsRefusedOncePastItsBound() async throws {
        let relay = try await TestRelay.start()
        let client = try RawHTTP(port: relay.port)
        #expect(await client.write("POST /v1/accounts HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"))
        // 64 KiB of small objects in 4 KiB chunks, 4 times the registration bound, and no last chunk.
        let piece = String(repeating: "{},", count: 4_096 / 3)
        for _ in 0..<16 {
            let chunk = String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n"
            guard await client.write(chunk) else { break }  // the relay may answer and close before all of it
        }
        let response = try #require(await client.readResponse())
        #expect(response.status == 413)
        #expect(Self.errorCode(response) == .payloadTooLarge)
        client.close()
        try await relay.stop()
    }

    /// Arrays are counted while parsing: a send with thousands of (empty) message objects is refused at the
    /// first element past the route's bound (a device count), as too many items, not decoded first.
    @Test func arraysAreBoundedWhileParsing() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let bomb = "{\"messages\":[" + Array(repeating: "{}", count: 50_000).joined(separator: ",") + "]}"
        let reply = try await http.raw(.PUT, "/v1/messages/\(bob.account)", body: Data(bomb.utf8), authorization: alice.authorizationHeader)
        #expect(reply.status == 400)
        #expect(reply.error?.code == .tooManyItems)

        // Nesting is bounded too (no wire type nests this deep).
        let deep = String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000)
        let nested = try await http.raw(.POST, "/v1/accounts", body: Data(deep.utf8))
        #expect(nested.status == 400)
        #expect(nested.error?.code == .malformedRequest)

        // A registration-sized JSON bomb is over the registration bound.
        let registrationBomb = "[" + Array(repeating: "{}", count: 20_000).joined(separator: ",") + "]"
        let big = try await http.raw(.POST, "/v1/accounts", body: Data(registrationBomb.utf8))
        #expect(big.status == 413)
        #expect(big.error?.code == .payloadTooLarge)

        // Legitimate bodies at the bounds still pass: 100 one-time prekeys, a 256 KiB ciphertext.
        let full = try await http.register(Fixtures.uniqueName("full"), keys: Fixtures.keys(oneTimeCount: 100))
        #expect(full.deviceId == 1)
        let devices = try await http.devices(of: bob.account, alice)
        let large = OutgoingDeviceMessage(
            deviceId: 1, registrationId: devices[0].registrationId, type: 1, content: Fixtures.bytes(RelayLimits.maxCiphertextBytes))
        #expect(try await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: SendMessageRequest(messages: [large])).status == 200)
        try await relay.stop()
    }

    /// The decoder reads each input once and keeps the strict rules: unknown fields at any depth, duplicate
    /// fields, wrong types, invalid UTF-8 and escapes.
    @Test func strictDecodingRules() throws {
        let limits = JSONParseLimits(maxArrayElements: 100)
        func decode(_ text: String) -> Result<SendMessageRequest, RelayError> {
            Result { () throws(RelayError) in try StrictJSON.decode(SendMessageRequest.self, bytes: Array(text.utf8), limits: limits) }
        }
        let ok = decode(#"{"messages":[{"deviceId":1,"registrationId":2,"type":3,"content":"AAE="}],"clientTimestamp":5}"#)
        #expect((try? ok.get())?.messages.first?.content == Data([0, 1]))
        #expect((try? ok.get())?.ownDeviceMessages == [])
        let escaped = decode(#"{"mess\u0061ges":[],"clientTimestamp":null,"ownDeviceMessages":[]}"#)
        #expect((try? escaped.get())?.messages == [])
        func code(_ text: String) -> ErrorCode? {
            if case .failure(let error) = decode(text) { return error.body.code }
            return nil
        }
        #expect(code(#"{"messages":[{"deviceId":1,"registrationId":2,"type":3,"content":"AA==","x":1}]}"#) == .unknownField)
        #expect(code(#"{"messages":[],"extra":null}"#) == nil)
        #expect(code(#"{"messages":[],"messages":[]}"#) == .malformedRequest)
        #expect(code(#"{"messages":{}}"#) == .malformedRequest)
        #expect(code(#"{"messages":[{"deviceId":-1,"registrationId":2,"type":3,"content":"AA=="}]}"#) == .malformedRequest)
        #expect(code(#"{"messages":[{"deviceId":1.5,"registrationId":2,"type":3,"content":"AA=="}]}"#) == .malformedRequest)
        #expect(code(#"{"messages":[{"deviceId":1,"registrationId":2,"type":3,"content":"not base64"}]}"#) == .malformedRequest)
        #expect(code(#"{"messages":[]} x"#) == .malformedRequest)
        #expect(code("{\"messages\":[],\"clientTimestamp\":1,\"a\u{1}\":2}") == .malformedRequest)
        #expect(code(#"{"messages":[],"s":"\ud800"}"#) == .unknownField)  // valid JSON text; an unknown field
        let invalidUTF8 = Array(#"{"messages":[],"s":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(throws: RelayError.self) { try StrictJSON.decode(SendMessageRequest.self, bytes: invalidUTF8, limits: limits) }
    }
}
