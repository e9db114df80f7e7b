import CSodium
import Foundation
import ParleyCrypto

/// What the provisioning payload (version 2) says about the history archive that travels beside it, as a
/// separate upload to the relay (Specs/client.md §"History upload"): the payload is authenticated end to end,
/// so the relay can neither drop nor swap the archive without the new device noticing.
public struct HistoryUploadHeader: Sendable, Equatable {
    /// Messages in the archive (the "M" of "imported N of M messages").
    public var messageCount: UInt32
    /// Bytes of the archive's plaintext (the encoded `HistoryArchive`).
    public var plaintextBytes: UInt64
    /// Plaintext bytes per chunk; the last chunk holds the rest (1...chunkBytes bytes).
    public var chunkBytes: UInt32
    /// SHA-256 of the whole plaintext.
    public var digest: [UInt8]

    public init(messageCount: UInt32, plaintextBytes: UInt64, chunkBytes: UInt32, digest: [UInt8]) {
        self.messageCount = messageCount
        self.plaintextBytes = plaintextBytes
        self.chunkBytes = chunkBytes
        self.digest = digest
    }

    /// Chunks of the archive: at least one (an archive always has its two counts).
    public var chunkCount: Int {
        guard chunkBytes > 0 else { return 0 }
        return max(1, Int((plaintextBytes + UInt64(chunkBytes) - 1) / UInt64(chunkBytes)))
    }

    /// Bytes of the sealed upload: each chunk's plaintext plus `LinkCrypto.overhead`.
    public var sealedBytes: Int { Int(plaintextBytes) + chunkCount * LinkCrypto.overhead }

    /// Plaintext bytes of chunk `index`.
    func plaintextBytes(ofChunk index: Int) -> Int {
        let start = UInt64(index) * UInt64(chunkBytes)
        return Int(min(UInt64(chunkBytes), plaintextBytes - start))
    }
}

/// The sealing of a history archive in chunks (Specs/client.md §"History upload"):
///
///     k_h   = HKDF-SHA256(ikm = X25519(E, X), salt = UTF-8(code), info = "Parley link history v1", 32 bytes)
///     ad_i  = "Parley link history v1" || u16(len code) || code || u32(i) || u8(last ? 1 : 0)
///     chunk_i = LinkCrypto blob: 0x01 || nonce (24, random) || XChaCha20-Poly1305(k_h, nonce, ad_i, plaintext_i)
///
/// The upload is chunk_0 || chunk_1 || ... || chunk_{n-1}, no other framing: every chunk but the last holds
/// `chunkBytes` of plaintext, and the header in the provisioning payload gives the plaintext size, so every
/// chunk's length follows. The index and the last-chunk mark in the associated data refuse reordered, dropped
/// or duplicated chunks and a cut after any chunk; the SHA-256 over the whole plaintext is checked last.
public enum HistoryUpload {
    public static let info = "Parley link history v1"
    /// Plaintext bytes per chunk: 64 KiB keeps the new device's working set per chunk small and the
    /// overhead (41 bytes a chunk) under 0.1 %.
    public static let chunkBytes: UInt32 = 64 * 1024
    /// The most a client seals or accepts: the relay's default bound on one archive (128 MiB); a larger
    /// archive would be refused by a relay at its defaults anyway.
    public static let maxSealedBytes = 128 * 1024 * 1024
    static let digestBytes = Int(crypto_hash_sha256_BYTES)  // 32

    /// The archive key, from one side's private key and the other side's public key (a different info string
    /// than the provisioning blob's key, so neither key opens the other's ciphertexts).
    package static func key(own: PrivateKey, their: PublicKey, code: String) throws(LinkError) -> SecretBytes {
        do {
            let shared = try own.agreement(with: their)
            return try HKDF.deriveSecret(ikm: shared, salt: Array(code.utf8), info: Array(info.utf8), length: LinkCrypto.keySize)
        } catch {
            throw .blobAuthenticationFailed
        }
    }

    static func associatedData(code: String, index: Int, last: Bool) -> [UInt8] {
        var ad = Array(info.utf8)
        let codeBytes = Array(code.utf8)
        ad.append(UInt8(truncatingIfNeeded: codeBytes.count >> 8))
        ad.append(UInt8(truncatingIfNeeded: codeBytes.count))
        ad += codeBytes
        let i = UInt32(truncatingIfNeeded: index)
        ad += [UInt8(i >> 24), UInt8((i >> 16) & 0xFF), UInt8((i >> 8) & 0xFF), UInt8(i & 0xFF)]
        ad.append(last ? 1 : 0)
        return ad
    }

    /// SHA-256 of `bytes`.
    static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digestBytes)
        _ = crypto_hash_sha256(&out, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        return out
    }
}

/// Seals an encoded archive chunk by chunk, on demand (the sealed upload is never built whole).
public struct HistorySealer: Sendable {
    public let header: HistoryUploadHeader
    private let plaintext: SecretBytes
    private let key: SecretBytes
    private let code: String

    /// `archive` is the encoded `HistoryArchive` with `messageCount` messages.
    package init(archive: SecretBytes, messageCount: Int, key: SecretBytes, code: String) throws(LinkError) {
        let sealed = archive.count + (archive.count / Int(HistoryUpload.chunkBytes) + 1) * LinkCrypto.overhead
        guard sealed <= HistoryUpload.maxSealedBytes else { throw .historyTooLarge(bytes: sealed, limit: HistoryUpload.maxSealedBytes) }
        self.plaintext = archive
        self.key = key
        self.code = code
        self.header = HistoryUploadHeader(
            messageCount: UInt32(clamping: messageCount), plaintextBytes: UInt64(archive.count), chunkBytes: HistoryUpload.chunkBytes,
            digest: archive.withBytes { HistoryUpload.digest($0) })
    }

    /// Sealed chunk `index` (0 ..< header.chunkCount).
    public func chunk(_ index: Int) throws(LinkError) -> Data {
        let start = index * Int(header.chunkBytes)
        let piece = plaintext.slice(start..<(start + header.plaintextBytes(ofChunk: index)))
        return try LinkCrypto.seal(
            piece, key: key, associatedData: HistoryUpload.associatedData(code: code, index: index, last: index == header.chunkCount - 1))
    }
}

/// Opens an upload as its bytes arrive, in any split: each chunk is authenticated as soon as it is whole; the
/// digest and the count are checked by `finish()`. Any failure is a typed `LinkError` and nothing is returned.
public struct HistoryOpener {
    public let header: HistoryUploadHeader
    private let key: SecretBytes
    private let code: String
    private var pending: [UInt8] = []
    private var plaintext: [UInt8] = []
    private var nextChunk = 0
    /// Sealed bytes received so far.
    public private(set) var received = 0

    package init(header: HistoryUploadHeader, key: SecretBytes, code: String) throws(LinkError) {
        guard header.chunkBytes > 0, header.digest.count == HistoryUpload.digestBytes,
              header.sealedBytes <= HistoryUpload.maxSealedBytes
        else { throw .historyMalformed("the archive header is not usable") }
        self.header = header
        self.key = key
        self.code = code
        plaintext.reserveCapacity(Int(header.plaintextBytes))
    }

    /// Takes the next received bytes. Throws `historyTooLong` past the announced size and
    /// `historyAuthenticationFailed(chunk:)` when a chunk does not open at its place.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws(LinkError) {
        guard received + bytes.count <= header.sealedBytes else { throw .historyTooLong }
        received += bytes.count
        pending.append(contentsOf: bytes)
        while nextChunk < header.chunkCount {
            let size = header.plaintextBytes(ofChunk: nextChunk) + LinkCrypto.overhead
            guard pending.count >= size else { break }
            let sealed = Data(pending[0..<size])
            pending.removeFirst(size)
            let opened: SecretBytes
            do {
                opened = try LinkCrypto.open(
                    sealed, key: key,
                    associatedData: HistoryUpload.associatedData(code: code, index: nextChunk, last: nextChunk == header.chunkCount - 1))
            } catch {
                throw .historyAuthenticationFailed(chunk: nextChunk)
            }
            opened.withBytes { plaintext.append(contentsOf: $0) }
            nextChunk += 1
        }
    }

    /// The whole plaintext, once every chunk opened and the digest matches; else `historyTruncated` or
    /// `historyAuthenticationFailed`. The working copy is wiped.
    public mutating func finish() throws(LinkError) -> SecretBytes {
        defer { wipe() }
        guard nextChunk == header.chunkCount, pending.isEmpty, received == header.sealedBytes else {
            throw .historyTruncated(chunk: nextChunk, of: header.chunkCount)
        }
        let digest = plaintext.withUnsafeBytes { HistoryUpload.digest($0) }
        guard ConstantTime.equals(digest, header.digest) else { throw .historyAuthenticationFailed(chunk: header.chunkCount) }
        return SecretBytes(copying: plaintext)
    }

    /// Zeroes what was decrypted so far.
    public mutating func wipe() {
        for index in plaintext.indices { plaintext[index] = 0 }
        plaintext.removeAll()
        pending.removeAll()
    }
}
