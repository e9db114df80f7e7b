import Foundation
import ParleyCrypto

/// Why a protocol operation failed. A failed operation never changes any store (the random
/// draws it made are spent, never reused). A successful one writes several stores; a persistent
/// store makes them atomic by running the operation inside one transaction.
public enum ProtocolError: Error, Equatable, Sendable {
    /// The message's version nibble is below 3 (a legacy format Parley does not speak).
    case legacyVersion(UInt8)
    /// The message's version nibble is above the highest Parley reads (4 for pairwise
    /// messages, 3 for Sender Key messages).
    case unknownVersion(UInt8)
    /// A SignalMessage's version is not the version of the session it was tried under (a
    /// version-3 message in a version-4 session, or the reverse).
    case versionMismatch(message: UInt8, session: UInt8)
    /// The bytes do not parse: bad protobuf tag, wire type or length, a missing required field,
    /// or too short to hold the version byte and MAC. `what` names the structure.
    case malformed(String)
    /// A key inside the message is not a serialized Curve25519 public key (33 bytes, type 0x05).
    /// A small-order ratchet or identity key is caught later, at the key agreement (`crypto`).
    case invalidKey(String)
    /// The base key of a PreKeySignalMessage that would start a new session is not canonical
    /// (`PublicKey.isCanonical`: a non-canonical encoding or a point with a torsion component),
    /// libsignal's "incoming base key is invalid".
    case invalidBaseKey
    /// Kyber material that cannot be used: a version-4 PreKeySignalMessage without its Kyber
    /// prekey id and ciphertext, or with only one of them; a Kyber ciphertext whose type byte or
    /// length is wrong; a bundle's Kyber prekey that does not deserialize. `what` says which.
    case invalidKyber(String)
    /// A new version-3 (X3DH) session refused under `SessionPolicy.requirePostQuantum`: a
    /// version-3 PreKeySignalMessage that matches no existing session (libsignal's "X3DH no
    /// longer supported"), or a bundle without a Kyber prekey. `what` says which.
    case x3dhRejected(String)
    /// The MAC did not verify under any session state for this address, or the message came from
    /// a receiving chain that is no longer kept.
    case badMAC
    /// The message's counter was already used (or its key was already dropped); `expected` is
    /// the chain's next expected counter.
    case duplicateMessage(expected: UInt32, counter: UInt32)
    /// The counter is more than `Limits.maxForwardJumps` beyond `expected`, the chain's next
    /// expected counter.
    case tooFarAhead(expected: UInt32, counter: UInt32)
    /// The body did not decrypt (bad padding) although the MAC verified.
    case invalidCiphertext
    /// The peer's identity key differs from the one recorded for this address.
    case untrustedIdentity(address: ProtocolAddress)
    /// A signature (signed prekey, Kyber prekey, sender-key message) did not verify.
    case badSignature
    /// There is no session with this address.
    case noSession(ProtocolAddress)
    /// The PreKeySignalMessage names a one-time prekey this device does not have.
    case missingPreKey(UInt32)
    /// The PreKeySignalMessage names a signed prekey this device does not have.
    case missingSignedPreKey(UInt32)
    /// The PreKeySignalMessage names a Kyber prekey this device does not have.
    case missingKyberPreKey(UInt32)
    /// A last-resort Kyber prekey was already used with this signed prekey and this base key by
    /// a session that no longer exists: a replayed first message (libsignal's "reused base key").
    case reusedBaseKey
    /// No sender-key state for this (group, sender, key id) in the old layout, or no own sender
    /// key to encrypt with.
    case noSenderKey(groupId: String, keyId: UInt32?)
    /// A Sender Key message in libsignal's current layout whose distribution id, or whose chain
    /// id within that distribution, has no state (libsignal's `NoSenderKeyState`).
    case unknownDistribution(distributionId: UUID, chainId: UInt32)
    /// A chain (a pairwise sending or receiving chain, or a sender-key chain) is at position
    /// `UInt32.max`: the key for that position would need a next chain key at 2^32, which the
    /// counter cannot hold. The message at that position is neither sent nor accepted, as in
    /// libsignal ("sender chain is too long"); the session or sender key must be replaced.
    case chainExhausted(position: UInt32)
    /// Stored state could not be decoded.
    case corruptState(String)
    /// A primitive failed (should not happen with valid keys).
    case crypto(CryptoError)
}

extension ProtocolError {
    /// A stable short name for the error kind, used by the conformance runner, logs and the
    /// interop tooling ("bad_mac", "duplicate", ...). The names are the reject reasons of the
    /// shared vectors.
    public var kind: String {
        switch self {
        case .legacyVersion, .unknownVersion, .versionMismatch: return "bad_version"
        case .malformed: return "truncated"
        case .invalidKey: return "invalid_key"
        case .invalidBaseKey: return "invalid_base_key"
        case .invalidKyber: return "invalid_kyber"
        case .x3dhRejected: return "x3dh_rejected"
        case .badMAC: return "bad_mac"
        case .duplicateMessage: return "duplicate"
        case .tooFarAhead: return "too_far_ahead"
        case .invalidCiphertext: return "invalid_ciphertext"
        case .untrustedIdentity: return "untrusted_identity"
        case .badSignature: return "bad_signature"
        case .noSession: return "no_session"
        case .missingPreKey, .missingSignedPreKey, .missingKyberPreKey: return "unknown_prekey"
        case .reusedBaseKey: return "reused_base_key"
        case .noSenderKey: return "no_sender_key"
        case .unknownDistribution: return "unknown_distribution"
        case .chainExhausted: return "chain_exhausted"
        case .corruptState: return "corrupt_state"
        case .crypto: return "crypto"
        }
    }
}

extension ProtocolError: CustomStringConvertible {
    /// A sentence for people (the CLI prints it); `kind` is the stable name for programs.
    public var description: String {
        switch self {
        case .legacyVersion(let v): return "message version \(v) is older than any Parley speaks"
        case .unknownVersion(let v): return "message version \(v) is newer than any Parley speaks"
        case .versionMismatch(let m, let s): return "a version-\(m) message in a version-\(s) session"
        case .malformed(let what): return "malformed message: \(what)"
        case .invalidKey(let what): return "invalid key: \(what)"
        case .invalidBaseKey: return "the base key of a new session is not canonical"
        case .invalidKyber(let what): return "invalid Kyber material: \(what)"
        case .x3dhRejected(let what): return "refused a classical (X3DH, non-post-quantum) session: \(what)"
        case .badMAC: return "message authentication failed"
        case .duplicateMessage(let expected, let counter): return "duplicate message (counter \(counter), next \(expected))"
        case .tooFarAhead(let expected, let counter): return "message too far ahead (counter \(counter), next \(expected))"
        case .invalidCiphertext: return "the message body does not decrypt"
        case .untrustedIdentity(let address): return "the identity key of \(address) changed"
        case .badSignature: return "a signature does not verify"
        case .noSession(let address): return "no session with \(address)"
        case .missingPreKey(let id): return "unknown one-time prekey \(id)"
        case .missingSignedPreKey(let id): return "unknown signed prekey \(id)"
        case .missingKyberPreKey(let id): return "unknown Kyber prekey \(id)"
        case .reusedBaseKey: return "a last-resort Kyber prekey was already used with this base key"
        case .noSenderKey(let group, let keyId): return "no sender key for group \(group)" + (keyId.map { ", key id \($0)" } ?? "")
        case .unknownDistribution(let id, let chain): return "no sender key state for distribution \(id.uuidString.lowercased()), chain \(chain)"
        case .chainExhausted(let position): return "chain exhausted at position \(position)"
        case .corruptState(let what): return "corrupt stored state: \(what)"
        case .crypto(let error): return "cryptographic failure: \(error)"
        }
    }
}
