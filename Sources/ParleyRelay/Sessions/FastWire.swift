import Foundation
import NIOCore
import ParleyWire

/// Hand-written JSON for the relay's hot WebSocket paths: encoding `message` and `sendResult` frames
/// (Foundation's `JSONEncoder` costs tens of microseconds per frame; these cost a few), and decoding
/// `ack` and `send` frames through ParleyWire's `FastFrameDecoder` (which falls back to `StrictJSON`).
enum FastWire {
    // MARK: encoding

    /// The `message` frame of one envelope, as JSONEncoder with sorted keys writes it (slashes unescaped).
    static func messageFrame(_ envelope: Envelope, allocator: ByteBufferAllocator) -> ByteBuffer {
        let content = envelope.content.base64EncodedString()
        var out = allocator.buffer(capacity: content.utf8.count + 320)
        out.writeStaticString(#"{"envelope":{"#)
        if let clientTimestamp = envelope.clientTimestamp {
            out.writeStaticString(#""clientTimestamp":"#)
            writeInt(&out, clientTimestamp)
            out.writeStaticString(",")
        }
        out.writeStaticString(#""content":""#)
        out.writeString(content)
        out.writeStaticString(#"","conversation":"#)
        writeString(&out, envelope.conversation)
        if let groupId = envelope.groupId {
            out.writeStaticString(#","groupId":""#)
            writeUUID(&out, groupId)
            out.writeStaticString("\"")
        }
        out.writeStaticString(#","id":""#)
        writeUUID(&out, envelope.id)
        out.writeStaticString(#"","kind":""#)
        out.writeString(envelope.kind.rawValue)
        out.writeStaticString(#"","senderAccount":"#)
        writeString(&out, envelope.senderAccount)
        out.writeStaticString(#","senderDevice":"#)
        writeInt(&out, Int64(envelope.senderDevice))
        out.writeStaticString(#","serverTimestamp":"#)
        writeInt(&out, envelope.serverTimestamp)
        out.writeStaticString(#","type":"#)
        writeInt(&out, Int64(envelope.type))
        out.writeStaticString(#"},"type":"message"}"#)
        return out
    }

    /// The `sendResult` frame answering a `send` frame.
    static func sendResultFrame(requestId: Int64, _ result: SendMessageResponse, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        var out = allocator.buffer(capacity: 96 + 39 * result.ids.count)
        out.writeStaticString(#"{"requestId":"#)
        writeInt(&out, requestId)
        out.writeStaticString(#","result":{"ids":["#)
        for (index, id) in result.ids.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString("\"")
            writeUUID(&out, id)
            out.writeStaticString("\"")
        }
        out.writeStaticString(#"],"queued":"#)
        writeInt(&out, Int64(result.queued))
        out.writeStaticString(#","serverTimestamp":"#)
        writeInt(&out, result.serverTimestamp)
        out.writeStaticString(#"},"type":"sendResult"}"#)
        return out
    }

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// A UUID in its canonical text form, upper-case like `UUID.uuidString` (Foundation formats with
    /// `snprintf`, a measurable cost per frame).
    static func writeUUID(_ out: inout ByteBuffer, _ id: UUID) {
        withUnsafeBytes(of: id.uuid) { bytes in
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { out.writeInteger(UInt8(ascii: "-")) }
                out.writeInteger(hexDigits[Int(byte >> 4)])
                out.writeInteger(hexDigits[Int(byte & 0x0F)])
            }
        }
    }

    /// Parses the canonical 36-character form (either case), as `UUID(uuidString:)` accepts it; nil otherwise.
    static func parseUUID(_ text: some Collection<UInt8>) -> UUID? { FastFrameDecoder.parseUUID(text) }

    private static func writeInt(_ out: inout ByteBuffer, _ value: Int64) {
        out.writeString(String(value))
    }

    /// A JSON string literal with the escapes JSON requires.
    private static func writeString(_ out: inout ByteBuffer, _ value: String) {
        out.writeStaticString("\"")
        let utf8 = value.utf8
        if !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.writeString(value)
        } else {
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""): out.writeStaticString(#"\""#)
                case UInt8(ascii: "\\"): out.writeStaticString(#"\\"#)
                case 0x0A: out.writeStaticString(#"\n"#)
                case 0x0D: out.writeStaticString(#"\r"#)
                case 0x09: out.writeStaticString(#"\t"#)
                case 0..<0x20:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    out.writeStaticString(#"\u00"#)
                    out.writeInteger(hex[Int(byte >> 4)])
                    out.writeInteger(hex[Int(byte & 0xF)])
                default: out.writeInteger(byte)
                }
            }
        }
        out.writeStaticString("\"")
    }

    // MARK: decoding

    /// A client frame of type `ack` or `send` in canonical shape, or nil (use `StrictJSON`). The decoder
    /// lives in ParleyWire (`FastFrameDecoder`), where the fuzz targets reach it without the relay.
    static func decodeClientFrame(_ bytes: some Collection<UInt8>) -> ClientFrame? {
        FastFrameDecoder.decodeClientFrame(bytes)
    }
}
