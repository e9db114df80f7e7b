import Foundation
import NIOCore
import ParleyWire
import Testing

@testable import ParleyRelay

/// The hand-written UUID text conversions on the relay's hot path agree with Foundation's.
@Suite("FastWire UUID text")
struct FastWireTests {
    @Test func formatsLikeFoundation() {
        for _ in 0..<1_000 {
            let id = UUID()
            var buffer = ByteBuffer()
            FastWire.writeUUID(&buffer, id)
            #expect(buffer.readString(length: buffer.readableBytes) == id.uuidString)
        }
    }

    @Test func parsesWhatFoundationParses() {
        for _ in 0..<1_000 {
            let id = UUID()
            #expect(FastWire.parseUUID(Array(id.uuidString.utf8)) == id)
            #expect(FastWire.parseUUID(Array(id.uuidString.lowercased().utf8)) == id)
        }
    }

    @Test func neverAcceptsMoreThanFoundation() {
        let good = "E621E1F8-C36C-495A-93FC-0C247A3E6E5F"
        var bad = [
            "", "E621E1F8", good + "0", String(good.dropLast()), good.replacingOccurrences(of: "-", with: "x"),
            "E621E1F8C36C-495A-93FC-0C247A3E6E5F0", "G621E1F8-C36C-495A-93FC-0C247A3E6E5F", "E621E1F8-C36C-495A-93FC-0C247A3E6E5 ",
        ]
        // Every single-byte corruption of a valid id: parsed exactly when Foundation parses it, to the same value.
        for position in 0..<good.utf8.count {
            for replacement in ["-", "g", "z", " ", "0", "a"] {
                var bytes = Array(good.utf8)
                bytes[position] = UInt8(ascii: Unicode.Scalar(replacement)!)
                bad.append(String(decoding: bytes, as: UTF8.self))
            }
        }
        // Foundation is lenient with some of these (it parses with sscanf); the fast parser takes only the
        // canonical form. What matters: it never accepts what Foundation refuses, and agrees when it accepts
        // (a frame it refuses goes to the strict decoder, which uses Foundation).
        for text in bad {
            if let parsed = FastWire.parseUUID(Array(text.utf8)) {
                #expect(parsed == UUID(uuidString: text), "\(text)")
            }
        }
        #expect(FastWire.parseUUID(Array(good.utf8)) == UUID(uuidString: good))
    }
}

/// The frame decision the relay's WebSocket session makes (`ClientFrameDecoding`): the fast path takes no
/// frame the strict decoder refuses, also at the frame parse limit (a `relay-frame` fuzz invariant).
@Suite("Client frame decoding")
struct ClientFrameDecodingTests {
    private func ack(_ count: Int) throws -> [UInt8] {
        let ids = (0..<count).map { _ in UUID() }
        return Array(try WireCoding.encoder().encode(ClientFrame.ack(ids)))
    }

    @Test func anAckAtTheLimitTakesTheFastPath() throws {
        let frame = try ack(ClientFrameDecoding.maxAckIds)
        #expect(FastWire.decodeClientFrame(frame)?.ids?.count == ClientFrameDecoding.maxAckIds)
        #expect((try? ClientFrameDecoding.decode(frame).get())?.ids?.count == ClientFrameDecoding.maxAckIds)
    }

    @Test func anAckOverTheLimitIsRefusedWhileParsing() throws {
        let frame = try ack(ClientFrameDecoding.maxAckIds + 1)
        #expect(frame.count <= ClientFrameDecoding.maxFrameBytes)
        #expect(FastWire.decodeClientFrame(frame) == nil)
        #expect(
            ClientFrameDecoding.decode(frame)
                == .failure(.invalid(.tooManyItems("an array has more than \(ClientFrameDecoding.maxAckIds) elements"))))
    }

    @Test func aFrameOverTheSizeBoundIsRefusedUnread() {
        let frame = Array(#"{"type":"ping","x":""#.utf8) + [UInt8](repeating: 0x61, count: ClientFrameDecoding.maxFrameBytes)
            + Array(#""}"#.utf8)
        #expect(ClientFrameDecoding.decode(frame) == .failure(.tooLarge(limit: ClientFrameDecoding.maxFrameBytes)))
    }
}
