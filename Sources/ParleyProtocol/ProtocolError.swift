import ParleyCrypto

/// Why a protocol operation failed. A failed operation never changes any store (the random
/// draws it made are spent, never reused). A successful one writes several stores; a persistent
/// store makes them atomic by running the operation inside one transaction.
public enum ProtocolError: Error, Equatable, Sendable {
    /// The message's version nibble is below 3 (a legacy format Parley does not speak).
    case legacyVersion(UInt8)
    /// The message's version nibble is above 3 (a newer format, e.g. PQXDH's 4).
    case unknownVersion(UInt8)
    /// The bytes do not parse: bad protobuf tag, wire type or length, a missing required field,
    /// or too short to hold the version byte and MAC. `what` names the structure.
    case malformed(String)
    /// A key inside the message is not a serialized Curve25519 public key (33 bytes, type 0x05),
    /// or a PreKeySignalMessage's base key is not canonical (`PublicKey.isCanonical`: a
    /// non-canonical encoding or a point with a torsion component). A small-order ratchet or
    /// identity key is caught later, at the key agreement (`crypto`).
    case invalidKey(String)
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
    /// A signature (signed prekey, sender-key message) did not verify.
    case badSignature
    /// There is no session with this address.
    case noSession(ProtocolAddress)
    /// The PreKeySignalMessage names a one-time prekey this device does not have.
    case missingPreKey(UInt32)
    /// The PreKeySignalMessage names a signed prekey this device does not have.
    case missingSignedPreKey(UInt32)
    /// No sender-key state for this (group, sender, key id).
    case noSenderKey(groupId: String, keyId: UInt32?)
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
    /// interop tooling ("bad_mac", "duplicate", ...).
    public var kind: String {
        switch self {
        case .legacyVersion, .unknownVersion: return "bad_version"
        case .malformed: return "truncated"
        case .invalidKey: return "invalid_key"
        case .badMAC: return "bad_mac"
        case .duplicateMessage: return "duplicate"
        case .tooFarAhead: return "too_far_ahead"
        case .invalidCiphertext: return "invalid_ciphertext"
        case .untrustedIdentity: return "untrusted_identity"
        case .badSignature: return "bad_signature"
        case .noSession: return "no_session"
        case .missingPreKey: return "missing_prekey"
        case .missingSignedPreKey: return "missing_signed_prekey"
        case .noSenderKey: return "no_sender_key"
        case .chainExhausted: return "chain_exhausted"
        case .corruptState: return "corrupt_state"
        case .crypto: return "crypto"
        }
    }
}
