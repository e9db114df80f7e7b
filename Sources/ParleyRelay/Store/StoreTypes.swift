import Foundation
import ParleyWire

/// Credential record of a device, as needed to authenticate it.
struct StoredDeviceAuth: Sendable {
    let accountId: Int64
    let account: String
    let deviceId: UInt32
    let credentialHash: Data
    /// False while the device is a claimed-but-not-approved link.
    let active: Bool
}

/// A queued envelope and its position in the device queue.
///
/// Every backend numbers a device's entries so that, for one device, a larger `seq` was committed later: an
/// entry with a smaller `seq` is visible to any read that starts after the larger one committed (the SQLite
/// store has one writer and one global counter; the PostgreSQL store takes the numbers from the device row,
/// under its row lock, in the committing transaction).
struct QueuedEnvelope: Sendable {
    let seq: Int64
    let envelope: Envelope
    /// The `seq` of the entry committed just before this one in the same device queue, when the backend knows it
    /// (PostgreSQL: numbers per device without gaps, so `seq - 1`; 0 for the first). With several relay nodes a
    /// live envelope can overtake an earlier one committed on another node; the session sees that gap and reads
    /// the store first. nil: no such check (one node: live envelopes arrive in commit order).
    var previousSeq: Int64? = nil
}

/// What a sender asks the relay to store, validated and committed by the store inside one transaction.
struct MessageSubmission: Sendable {
    enum Payload: Sendable {
        /// 1:1: ciphertexts for the recipient account and sync copies for the sender's other devices.
        case direct(recipient: String, messages: [OutgoingDeviceMessage], own: [OutgoingDeviceMessage])
        /// Group: one ciphertext fanned out to all member devices except the sending one; refused with
        /// `.groupChanged` when `epoch` is given and is not the group's current version.
        case group(groupId: UUID, type: Int, content: Data, epoch: Int64?)
    }

    let sender: AuthenticatedDevice
    let payload: Payload
    let clientTimestamp: Int64?
    let serverTimestamp: Int64
    let expiresAt: Int64
    /// When the relay made it (monotonic nanoseconds, `DeliveryTrace`; 0 unless tracing is on).
    var receivedAt: UInt64 = DeliveryTrace.now()
}

/// The result of a committed submission.
struct SubmissionReceipt: Sendable {
    let serverTimestamp: Int64
    let ids: [UUID]
    /// Device queues that received a copy (to wake their connections).
    let recipients: [DeviceAddress]
    /// The committed queue entries, one per recipient copy, for live delivery to connected devices.
    let deliveries: [Delivery]
}

/// One committed queue entry and the device queue it is in.
struct Delivery: Sendable {
    let address: DeviceAddress
    let queued: QueuedEnvelope
}

/// Device queues that changed as a side effect of a store operation (group events).
struct AffectedQueues: Sendable {
    var devices: [DeviceAddress]
    static let none = AffectedQueues(devices: [])
}

/// Summary of one expiry sweep.
struct ExpiryResult: Sendable {
    var expiredMessages: Int
    var affected: [DeviceAddress]
}

/// The bundles one fetch asks for: all active devices of `account`, or those among `deviceIds`.
struct BundleRequest: Sendable {
    let account: String
    let deviceIds: [UInt32]?
}

/// What a bundle fetch found: per known account (in request order) its bundles, and the unknown accounts.
struct BundleFetchResult: Sendable {
    let bundles: [PreKeyBundleResponse]
    let unknownAccounts: [String]
}

/// A 1:1 message was routed from account `from` to account `to` (internal ids): half of a contact relation.
struct ContactPair: Sendable, Hashable {
    let from: Int64
    let to: Int64
}

/// What the relay still holds of a device's prekeys (the low-prekey notice).
struct PreKeyCounts: Sendable, Equatable {
    var oneTime: Int
    var kyberOneTime: Int
    var hasKyberLastResort: Bool
}
