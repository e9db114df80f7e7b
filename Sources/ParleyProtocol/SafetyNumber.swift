import Foundation
import ParleyCrypto
import SwiftProtobuf

/// Safety numbers: what two people compare out of band (read aloud, or one scans the other's
/// code) to know that no one sits between their devices. Compatible with libsignal's
/// `Fingerprint` (version 2, 5,200 iterations), so the digits match another Signal-protocol
/// client's for the same keys and identifiers.
///
/// Per party: h = SHA-512(0x0000 || key || stable_id || key), then 5,199 times
/// h = SHA-512(h || key). The displayed number is the two parties' 30-digit strings, the smaller
/// first; each string is six 5-byte big-endian chunks of h, each mod 100,000, zero-padded.
public struct SafetyNumber: Sendable, Equatable {
    public static let defaultIterations = 5_200
    public static let scannableVersion: UInt32 = 2

    /// 60 digits, identical on both sides.
    public let displayString: String
    /// The protobuf the local side shows as a code (local fingerprint first).
    public let scannable: [UInt8]

    public init(
        localId: [UInt8], localKey: IdentityKey, remoteId: [UInt8], remoteKey: IdentityKey,
        iterations: Int = SafetyNumber.defaultIterations, version: UInt32 = SafetyNumber.scannableVersion
    ) throws(ProtocolError) {
        guard iterations > 1, iterations <= 1_000_000 else { throw .malformed("safety number iterations \(iterations)") }
        let local = Self.fingerprint(id: localId, key: localKey, iterations: iterations)
        let remote = Self.fingerprint(id: remoteId, key: remoteKey, iterations: iterations)
        let localDigits = Self.digits(local), remoteDigits = Self.digits(remote)
        displayString = localDigits < remoteDigits ? localDigits + remoteDigits : remoteDigits + localDigits
        var combined = Parley_Fingerprint_CombinedFingerprints()
        combined.version = version
        combined.localFingerprint.content = Data(local.prefix(32))
        combined.remoteFingerprint.content = Data(remote.prefix(32))
        do { scannable = try combined.serializedBytes() } catch { throw .malformed("fingerprint encoding") }
    }

    /// True when `theirs` (scanned from the other device) shows the same two fingerprints,
    /// mirrored. Compared in constant time; a different version is an error, not a mismatch.
    public func matches(scanned theirs: [UInt8]) throws(ProtocolError) -> Bool {
        let mine: Parley_Fingerprint_CombinedFingerprints
        let other: Parley_Fingerprint_CombinedFingerprints
        do {
            mine = try Parley_Fingerprint_CombinedFingerprints(serializedBytes: scannable)
            other = try Parley_Fingerprint_CombinedFingerprints(serializedBytes: theirs)
        } catch {
            throw .malformed("scanned safety number")
        }
        guard other.hasVersion, other.hasLocalFingerprint, other.hasRemoteFingerprint,
              other.localFingerprint.hasContent, other.remoteFingerprint.hasContent
        else { throw .malformed("scanned safety number is incomplete") }
        guard other.version == mine.version else { throw .malformed("safety number version \(other.version), expected \(mine.version)") }
        let sameRemote = ConstantTime.equals(Array(other.localFingerprint.content), Array(mine.remoteFingerprint.content))
        let sameLocal = ConstantTime.equals(Array(other.remoteFingerprint.content), Array(mine.localFingerprint.content))
        return sameRemote && sameLocal
    }

    static func fingerprint(id: [UInt8], key: IdentityKey, iterations: Int) -> [UInt8] {
        let keyBytes = key.serialized
        var hasher = SHA512Hasher()
        hasher.update([UInt8(0), UInt8(0)])
        hasher.update(keyBytes)
        hasher.update(id)
        hasher.update(keyBytes)
        var hash = hasher.finish()
        for _ in 1..<iterations {
            var next = SHA512Hasher()
            next.update(hash)
            next.update(keyBytes)
            hash = next.finish()
        }
        return hash
    }

    static func digits(_ fingerprint: [UInt8]) -> String {
        var out = ""
        for chunk in 0..<6 {
            let value = fingerprint[(chunk * 5)..<(chunk * 5 + 5)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let text = String(value % 100_000)
            out += String(repeating: "0", count: 5 - text.count) + text
        }
        return out
    }
}
