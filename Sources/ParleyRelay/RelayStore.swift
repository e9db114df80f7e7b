import Foundation
import ParleyWire

/// A complete link history archive, as `RelayStore.linkHistory` finds it.
struct LinkHistoryInfo: Sendable {
    /// The hash of its link code (the archive's key).
    let key: Data
    let bytes: Int
    let pieces: Int
}

/// All persistent state of the relay, behind one protocol with two implementations: `SQLiteRelayStore`
/// (Store/SQLite, the embedded default) and `PostgresRelayStore` (Store/Postgres, several nodes on one database).
/// Routes, sessions and the group committers see only this protocol.
///
/// Implementations must make each method atomic (one transaction), and `commit(_:)` must validate every
/// submission against the device lists and queue limits *inside* the transaction that stores it.
/// Errors meant for the client are thrown as `RelayError`; anything else is an internal failure.
protocol RelayStore: Sendable {
    /// Releases the storage (after the server stopped); no method may be called afterwards. Must not block a
    /// thread of Swift's cooperative pool while it waits for work in flight (run blocking waits elsewhere).
    func close() async throws

    /// False while the database cannot be reached (PostgreSQL down or restarting, this node reconnecting): calls
    /// fail at once with `RelayError.unavailable` then, and `/healthz` answers 503 "degraded".
    var isAvailable: Bool { get }

    /// Sets the backend's own gauges before `/metrics` answers (SQLite: its write-ahead log checkpoints).
    func reportMetrics(to metrics: RelayMetrics)

    // MARK: accounts and devices
    /// Creates the account and its device 1, with the hash of its recovery code (`RecoveryCode.hash`) if given. Throws
    /// `.nameTaken`.
    func createAccount(name: String, device: NewDeviceKeys, credentialHash: Data, recoveryCodeHash: String?, now: Int64) async throws
        -> Int64
    /// Counts one recovery attempt on account `name` and returns its recovery code's hash to check. At most
    /// `maxAttempts` per fixed window of `windowMillis` (from the first attempt after the previous window): the
    /// next one throws `.rateLimitedFor(seconds until the window ends)` without returning the hash. Throws
    /// `.notFound` for an unknown account, `.recoveryRefused` for one without a recovery code.
    func recoveryAttempt(name: String, now: Int64, windowMillis: Int64, maxAttempts: Int) async throws -> RecoveryChallenge
    /// Recovers the account of `challenge` in ONE transaction: if its recovery code hash is still
    /// `challenge.codeHash` (else `.recoveryRefused`: recovered meanwhile), removes every device (queues, prekeys,
    /// link codes, push subscriptions, as `removeDevice`), creates device 1 with `device` and `credentialHash`, and
    /// replaces the code hash with `newCodeHash`. Returns the ids of the removed devices.
    func recoverAccount(
        _ challenge: RecoveryChallenge, newCodeHash: String, device: NewDeviceKeys, credentialHash: Data, now: Int64
    ) async throws -> [UInt32]
    func deviceAuth(account: String, deviceId: UInt32) async throws -> StoredDeviceAuth?
    /// Active devices of an account, by device id. Throws `.notFound` for an unknown account.
    func devices(account: String) async throws -> [DeviceInfo]
    /// Removes a device, its prekeys and its queue. Throws `.notFound`.
    func removeDevice(accountId: Int64, deviceId: UInt32) async throws
    func touchDevice(_ address: DeviceAddress, now: Int64) async throws
    /// Several `touchDevice` updates in ONE transaction.
    func touchDevices(_ touches: [DeviceTouch]) async throws
    /// Latest `last_seen` over the account's devices (nil if never seen). Throws `.notFound`.
    func lastSeen(account: String) async throws -> Int64?

    // MARK: prekeys
    /// Replaces the signed prekey if given (its signature must verify under the identity key in effect after the
    /// upload, else `.invalidField`), adds one-time prekeys (same key id replaces; more than
    /// `RelayLimits.maxStoredOneTimePreKeys` stored afterwards: `.tooManyItems`, nothing stored), replaces the
    /// device's last-resort Kyber prekey if given and adds one-time Kyber prekeys (same key id replaces; a
    /// one-time key with the id of the device's last-resort key: `.invalidField`; more than
    /// `RelayLimits.maxStoredKyberOneTimePreKeys` one-time Kyber prekeys stored afterwards: `.tooManyItems`).
    /// Returns what remains (`PreKeyCounts`). Any throw leaves nothing of the upload stored (one transaction).
    /// With `identityKey` (already checked against the signed prekey's signature), replaces the device's identity
    /// key, drops its old one-time prekeys and all its Kyber prekeys (signed by the old identity), and activates
    /// a pending device approved with `awaitIdentityUpload`; any other upload by a pending device throws
    /// `.unauthorized`.
    /// `kyberSignedBy` is the identity key under which the caller verified the Kyber prekeys' signatures
    /// (required when Kyber prekeys are given): if the device's identity key after this upload is another one
    /// (it changed concurrently), `.invalidField` is thrown and nothing is stored. Stores do not verify Kyber
    /// signatures themselves (XEdDSA verification of up to 101 keys stays outside the write transaction).
    func storePreKeys(
        _ address: DeviceAddress, identityKey: Data?, signed: SignedPreKey?, oneTime: [OneTimePreKey],
        kyberLastResort: KyberPreKey?, kyberOneTime: [KyberPreKey], kyberSignedBy: Data?
    ) async throws -> PreKeyCounts
    /// What the relay holds of the device's prekeys: one-time EC and Kyber counts, whether it has a last-resort
    /// Kyber prekey (the low-prekey notice).
    func preKeyCounts(_ address: DeviceAddress) async throws -> PreKeyCounts
    /// The device's stored identity key (nil for an unknown device).
    func identityKey(_ address: DeviceAddress) async throws -> Data?
    /// Bundles of the requested devices of each account (all active devices when `deviceIds` is nil), in ONE write
    /// transaction; each one-time prekey (EC and Kyber) is removed as it is handed out. `charge(n)` runs first with
    /// the number of device bundles found and may throw to refuse the fetch (nothing taken); `mayHandOut` is asked
    /// once per device that has a one-time prekey (EC or Kyber) left (false: its bundle comes without a one-time
    /// EC prekey and with its last-resort Kyber prekey instead of a one-time one). Each bundle carries the
    /// device's lowest-id one-time Kyber prekey if it may hand one out, else its last-resort Kyber prekey (kept),
    /// else none (a device that never uploaded one). Unknown accounts are listed.
    func takePreKeyBundles(
        _ requests: [BundleRequest], charge: @escaping @Sendable (Int) throws -> Void,
        mayHandOut: @escaping @Sendable (DeviceAddress) -> Bool
    ) async throws -> BundleFetchResult

    // MARK: device linking
    func createLinkCode(_ creator: DeviceAddress, code: String, now: Int64, expiresAt: Int64) async throws
    /// Creates a pending device for the code's account. Returns (account name, new device id).
    func claimLinkCode(
        code: String, device: NewDeviceKeys, credentialHash: Data, now: Int64, maxDevices: Int
    ) async throws -> (String, UInt32)
    func linkInfo(accountId: Int64, code: String, now: Int64) async throws -> LinkClaimInfo
    /// Activates the claimed device (with `awaitIdentityUpload`: leaves it pending until its identity upload).
    /// Throws `.linkCodeUnavailable` unless the code is claimed and not expired.
    func approveLink(
        accountId: Int64, code: String, provisioningBlob: Data, awaitIdentityUpload: Bool, now: Int64
    ) async throws
    func linkStatus(_ address: DeviceAddress) async throws -> LinkStatusResponse

    // MARK: link history archive (relay-protocol.md §4.5.1)
    /// Starts the history upload of link `code` by `uploader`, which must be the device that created the code, while
    /// the code is claimed and not expired (else `.notFound` / `.linkCodeUnavailable`). A previous upload of the same
    /// link is dropped first (one archive per link). Returns the bytes this upload may take: `maxBytes`, less when
    /// the account's other archives leave less of `maxAccountBytes` (`.payloadTooLarge` when nothing is left).
    func beginLinkHistory(_ uploader: DeviceAddress, code: String, now: Int64, maxBytes: Int, maxAccountBytes: Int) async throws -> Int
    /// Appends piece `seq` (0, 1, ...) of the upload started by `beginLinkHistory`.
    func appendLinkHistory(code: String, seq: Int, data: Data) async throws
    /// Marks the upload complete (downloadable). `.linkCodeUnavailable` if its link is no longer claimed.
    func finishLinkHistory(code: String, now: Int64) async throws
    /// Drops the archive of link `code`, complete or not.
    func abortLinkHistory(code: String) async throws
    /// The complete archive of the link that created `device` (the new device): its key, size and pieces.
    /// `.notFound` when there is none (not uploaded, acknowledged or swept).
    func linkHistory(_ device: DeviceAddress) async throws -> LinkHistoryInfo
    /// Piece `seq` of an archive found with `linkHistory`; nil if it is gone since.
    func linkHistoryPiece(_ key: Data, seq: Int) async throws -> Data?
    /// The new device acknowledged its download: the archive goes. False when there was none.
    func deleteLinkHistory(_ device: DeviceAddress) async throws -> Bool

    // MARK: queues
    /// Validates and stores all submissions in ONE transaction; one result per submission, in order. A group
    /// submission naming a version (`epoch`) other than the group's current one fails with `.groupChanged` (nothing
    /// stored); the membership check and the version check read the same snapshot as the fan-out, so the devices a
    /// group message is queued to are exactly the members of the version it names.
    func commit(_ submissions: [MessageSubmission], limits: RelayLimits) async throws -> [Result<SubmissionReceipt, RelayError>]
    /// Envelopes of a device queue with `seq > afterSeq`, oldest first: at most `limit`, and no more once their
    /// ciphertexts reach `maxBytes` (at least one).
    func pending(_ address: DeviceAddress, afterSeq: Int64, limit: Int, maxBytes: Int) async throws -> [QueuedEnvelope]
    /// Removes acknowledged envelopes from device queues, all in ONE transaction. Returns, per entry,
    /// how many were removed (unknown ids are ignored).
    func ack(_ batch: [(DeviceAddress, [UUID])]) async throws -> [Int]
    /// Deletes queue entries that expired at `now`, and stale link state: open or claimed codes past their
    /// expiry (with the pending devices they created) and approved codes a day after expiry.
    func deleteExpired(now: Int64) async throws -> ExpiryResult
    /// Total queued entries (for metrics).
    func totalQueued() async throws -> Int

    // MARK: push and settings
    func setPushEndpoint(_ address: DeviceAddress, endpoint: String, now: Int64) async throws
    /// Removes the device's endpoint; with `ifEndpoint`, only if it is still that one.
    func removePushEndpoint(_ address: DeviceAddress, ifEndpoint: String?) async throws
    func pushEndpoint(_ address: DeviceAddress) async throws -> String?
    /// Returns the stored value of a relay setting, storing `makeDefault()` first if there is none.
    func setting(_ name: String, orInsert makeDefault: @Sendable () -> Data) async throws -> Data

    // MARK: contacts (who may see whose presence and typing)
    /// Whether the two accounts are contacts: the relay routed a 1:1 message from each to the other, or they
    /// share a group. An account is its own contact.
    func areContacts(_ a: Int64, _ b: String) async throws -> Bool
    /// The accounts among `names` that are contacts of `viewer`.
    func contacts(of viewer: Int64, among names: [String]) async throws -> Set<String>

    // MARK: groups
    // Roles and versions (Specs/relay-protocol.md §7, Specs/storage.md `chat_group`, `group_member`): every
    // member is an admin or a plain member (the creator is the first admin); every change of members or admins
    // increments the group's version (`GroupInfo.epoch`, 1 at creation) in the transaction that makes it, and
    // queues, in that same transaction, one `groupEvent` to the devices named below whose content is the JSON of
    // `GroupEvent {groupId, action, actor, members, epoch, currentMembers, admins, promoted?}` stamped with the
    // group as it is after the change. A call that changes nothing (every name already a member / not a member /
    // already an admin) increments nothing, queues nothing and returns `AffectedQueues.none`. The event takes
    // queue room like a message (the device caps and the actor's share, `limits`): a device without room
    // refuses the whole change (`queueFull`, nothing changed). Unknown names throw `.notFound` before anything
    // changes; a non-member actor `.forbidden`; a plain member attempting an admin operation `.notAdmin`.

    /// Creates a group of `members` plus the creator (its only admin) at version 1; `groupFull` beyond
    /// `limits.maxGroupMembers`. Event `created` (`members`: every member) to every member device.
    func createGroup(creator: AuthenticatedDevice, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits)
        async throws -> (GroupInfo, AffectedQueues)
    /// Admins only: adds `members` as plain members (existing members ignored); `groupFull` beyond
    /// `limits.maxGroupMembers`. Event `membersAdded` (`members`: those added) to every member device after the change.
    func addGroupMembers(actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits)
        async throws -> (GroupInfo, AffectedQueues)
    /// Removes members (non-members named are ignored): admins may remove anyone, the creator included; a
    /// request naming only the actor (leaving) is allowed to every member. A change that leaves members but no
    /// admin makes the longest-standing remaining member (earliest `added_at`, then name) an admin, named in the
    /// event's `promoted`. Event `membersRemoved` (`members`: those removed) to every device of the members
    /// *before* the change (removed members learn of it too).
    func removeGroupMembers(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues)
    /// Admins only: makes members admins (admins already ignored; a name that is not a member throws
    /// `.invalidField`, nothing changed). Event `adminsAdded` (`members`: the new admins) to every member device.
    func addGroupAdmins(
        actor: AuthenticatedDevice, groupId: UUID, members: [String], now: Int64, expiresAt: Int64, limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues)
    /// Group info; throws `.notFound`, or `.forbidden` if `viewer` is not a member.
    func group(_ groupId: UUID, viewer: Int64) async throws -> GroupInfo
    func groups(of accountId: Int64) async throws -> [GroupInfo]
    /// Account names of the group's members if `accountId` is a member, else throws `.forbidden`/`.notFound`.
    func groupMemberAccounts(_ groupId: UUID, requester: Int64) async throws -> [String]
}

extension RelayStore {
    /// `pending` bounded by count only.
    func pending(_ address: DeviceAddress, afterSeq: Int64, limit: Int) async throws -> [QueuedEnvelope] {
        try await pending(address, afterSeq: afterSeq, limit: limit, maxBytes: .max)
    }
}

extension RelayStore {
    /// An embedded database (SQLite) is there as long as the process is.
    var isAvailable: Bool { true }
}

extension RelayStore {
    /// An account without a recovery code (store tests, and accounts made before recovery existed).
    func createAccount(name: String, device: NewDeviceKeys, credentialHash: Data, now: Int64) async throws -> Int64 {
        try await createAccount(name: name, device: device, credentialHash: credentialHash, recoveryCodeHash: nil, now: now)
    }
}

/// What a recovery attempt is checked against: the account and its recovery code's stored hash.
struct RecoveryChallenge: Sendable, Equatable {
    let accountId: Int64
    let codeHash: String
}

extension RelayStore {
    func reportMetrics(to metrics: RelayMetrics) {}
}
