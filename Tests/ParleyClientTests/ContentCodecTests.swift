import Foundation
import ParleyClient
import Testing

@Suite struct ContentCodecTests {
    @Test func roundTripsEveryKindPaddedToBlocks() throws {
        var data = DataMessage()
        data.messageID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
        data.timestamp = 1_700_000_000_000
        data.body = "hello \u{1F44B}"
        data.group.groupID = "g1"
        var receipt = ReceiptMessage()
        receipt.kind = .read
        receipt.messageIds = ["a", "b"]
        var typing = TypingMessage()
        typing.action = .started
        var contents: [MessageContent] = []
        var c = MessageContent()
        c.data = data
        contents.append(c)
        c.receipt = receipt
        contents.append(c)
        c.typing = typing
        contents.append(c)
        var distribution = SenderKeyDistribution()
        distribution.groupID = "6f1c2a9e-0000-4000-8000-000000000001"
        distribution.distribution = Data([0x33, 1, 2, 3])
        c.senderKeyDistribution = distribution
        contents.append(c)
        for content in contents {
            let padded = try ContentCodec.encode(content)
            #expect(padded.count % ContentCodec.blockSize == 0)
            #expect(try ContentCodec.decode(padded) == content)
        }
    }

    @Test func lengthsRevealOnlyTheSizeClass() throws {
        var short = MessageContent(), longer = MessageContent()
        var a = DataMessage(), b = DataMessage()
        a.body = "hi"
        b.body = String(repeating: "x", count: 100)
        short.data = a
        longer.data = b
        #expect(try ContentCodec.encode(short).count == ContentCodec.encode(longer).count)
    }

    @Test func badInputIsTyped() {
        #expect(throws: ContentError.badPadding) { try ContentCodec.decode([]) }
        #expect(throws: ContentError.badPadding) { try ContentCodec.decode([1, 2, 0, 0]) }
        #expect(throws: ContentError.badPadding) { try ContentCodec.decode([0, 0, 0]) }
        #expect(throws: ContentError.malformed("content protobuf")) { try ContentCodec.decode([0xFF, 0xFF, 0x80, 0]) }
        #expect(throws: ContentError.malformed("content has no body")) { try ContentCodec.decode([0x80]) }
    }
}
