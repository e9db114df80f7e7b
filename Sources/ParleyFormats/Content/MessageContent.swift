import Foundation
import SwiftProtobuf

/// The plaintext inside every encrypted Parley message (Proto/Content.proto).
public typealias MessageContent = Parley_Content_Content
public typealias DataMessage = Parley_Content_DataMessage
public typealias ReceiptMessage = Parley_Content_ReceiptMessage
public typealias TypingMessage = Parley_Content_TypingMessage
public typealias SyncMessage = Parley_Content_SyncMessage
public typealias GroupUpdate = Parley_Content_GroupUpdate
public typealias DecryptionErrorMessage = Parley_Content_DecryptionErrorMessage
public typealias SenderKeyDistribution = Parley_Content_SenderKeyDistribution
public typealias ResendUnavailable = Parley_Content_ResendUnavailable

/// Why decrypted bytes are not a valid `MessageContent`.
public enum ContentError: Error, Equatable, Sendable {
    /// The padding is not `content || 0x80 || 0x00*` in whole blocks.
    case badPadding
    /// The protobuf does not parse, or carries no body.
    case malformed(String)
    /// Larger than `ContentCodec.maxContentSize`.
    case tooLarge(Int)
}

/// Encodes content for encryption and decodes what was decrypted. Content is padded to a
/// multiple of `blockSize` so that ciphertext lengths reveal only a coarse size class:
/// `content || 0x80 || 0x00…`.
public enum ContentCodec {
    public static let blockSize = 160
    /// The largest content a client accepts (the relay's ciphertext limit is 256 KiB).
    public static let maxContentSize = 200 * 1024

    public static func encode(_ content: MessageContent) throws -> [UInt8] {
        let bytes: [UInt8] = try content.serializedBytes()
        guard bytes.count <= maxContentSize else { throw ContentError.tooLarge(bytes.count) }
        return pad(bytes)
    }

    public static func decode(_ padded: [UInt8]) throws(ContentError) -> MessageContent {
        let bytes = try unpad(padded)
        guard bytes.count <= maxContentSize else { throw .tooLarge(bytes.count) }
        let content: MessageContent
        do { content = try MessageContent(serializedBytes: bytes) } catch { throw .malformed("content protobuf") }
        guard content.body != nil else { throw .malformed("content has no body") }
        return content
    }

    static func pad(_ bytes: [UInt8]) -> [UInt8] {
        let total = (bytes.count + 1 + blockSize - 1) / blockSize * blockSize
        var out = bytes
        out.reserveCapacity(total)
        out.append(0x80)
        out.append(contentsOf: repeatElement(0, count: total - out.count))
        return out
    }

    static func unpad(_ padded: [UInt8]) throws(ContentError) -> [UInt8] {
        guard let marker = padded.lastIndex(where: { $0 != 0 }), padded[marker] == 0x80 else { throw .badPadding }
        return Array(padded[..<marker])
    }
}
