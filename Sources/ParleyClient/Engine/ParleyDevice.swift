import AsyncHTTPClient
import Foundation
import Logging
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// One Parley device: its store, its relay account, and the messaging engine on top of them.
///
/// * Sending: a message is written to the history and to the durable outbox in one
///   transaction, then sent; it leaves the outbox only when the relay has acknowledged it, so a
///   device killed mid-send sends it after restart (receivers drop the second copy by message id).
/// * Receiving (`run`): envelopes are decrypted, stored and marked processed in one
///   transaction, and acknowledged to the relay only after that commit.
/// * Every 1:1 message goes to every device of the recipient and, as a sync transcript, to this
///   account's other devices; group messages go once through the sender key.
///
/// An actor: calls are serialised; network waits let other calls (the receive loop) run.
public actor ParleyDevice {
    public nonisolated let store: DeviceStore
    public nonisolated let account: LocalAccount
    /// Set when `open` found the store rolled back and reset it (see `open`).
    public nonisolated let rollbackReset: RollbackReset?
    /// Right after `register` or `recover`: the account's recovery code, to show the user this once (it is
    /// not kept in the store; the relay keeps only a hash of it). Nil otherwise.
    public nonisolated let recoveryCode: String?
    let relay: RelayClient
    /// The operating system's CSPRNG (libsodium's `randombytes_buf`).
    var random: any RandomSource { SystemRandom.shared }
    let keyManager = KeyManager()
    var logger: Logger
    var subscribers: [UUID: AsyncStream<ClientEvent>.Continuation] = [:]
    var flushing = false
    var closed = false
    var flushAgain = false
    /// Callers of `flushOutbox` waiting for the flush that was running when they called.
    var flushWaiters: [CheckedContinuation<Void, Never>] = []
    var connection: RelayConnection?
    var lastFrameAt = ContinuousClock.now
    /// Accounts whose presence is watched (nil: the contacts).
    var presenceWatch: [String]?
    /// Last repair per device (rate limit: one decryption-error report per device per minute).
    var lastRepair: [ProtocolAddress: Int64] = [:]
    /// Bundles fetched per direct send, at most this many at once.
    static let maxConcurrentDistributions = 16

    /// Acks of processed envelopes not sent yet, and the connection they belong to (`queueAck`).
    var pendingAcks: (connection: RelayConnection?, ids: [UUID]) = (nil, [])
    var ackTimerRunning = false
    /// Envelope ids per ack frame: well under the relay's 1,000, and a backlog page (200) in one frame.
    static let maxAckBatch = 200
    /// How long a processed envelope's ack may wait for others to share its frame: short next to the
    /// relay's redelivery (only on a new connection), long enough to gather a burst (20 frames/s at most,
    /// under the relay's 50 frames/s per connection).
    static let ackDelay: Duration = .milliseconds(50)
    /// Why the outbox last stopped with entries queued (nil after a flush that emptied it).
    public internal(set) var deferral: SendDeferral?
    /// Whether this device is no longer part of its account: it removed itself (`removeDevice`, kept in the
    /// store), or the relay refused its credential (`RelayClientError.deviceRemoved`: removed by another device).
    /// Such a device sends nothing and does not connect (Specs/client.md §1.1).
    public internal(set) var removedFromAccount: Bool

    init(
        store: DeviceStore, account: LocalAccount, http: HTTPClient, rollbackReset: RollbackReset? = nil,
        rateLimit: RateLimitPolicy = RateLimitPolicy(), recoveryCode: String? = nil
    ) {
        self.store = store
        self.recoveryCode = recoveryCode
        self.account = account
        self.rollbackReset = rollbackReset
        self.relay = RelayClient(baseURL: account.serverURL, credentials: account.credentials, http: http, rateLimit: rateLimit)
        self.removedFromAccount = (try? store.removedFromAccountAt()) != nil
        var logger = Logger(label: "parley.client")
        logger.logLevel = .warning
        self.logger = logger
    }

    // MARK: registration and opening

    /// Creates a store at `storePath`, registers account `name` at `serverURL` with this device
    /// as its first device and publishes its prekeys. On failure no store is left behind.
    public static func register(
        name: String, serverURL: String, storePath: String, passphrase: Passphrase? = nil,
        deviceName: String? = nil, cost: KeyDerivationCost = .standard, http: HTTPClient = ParleyHTTP.shared,
        rateLimit: RateLimitPolicy = RateLimitPolicy()
    ) async throws -> ParleyDevice {
        try await establish(
            serverURL: serverURL, storePath: storePath, passphrase: passphrase, deviceName: deviceName, cost: cost, http: http,
            rateLimit: rateLimit
        ) { relay, device in try await relay.register(name: name, device: device) }
    }

    /// Recovers account `name`, whose devices are all lost, with its recovery code: creates a store at
    /// `storePath` with a **new identity key**, and the relay makes this device the account's device 1,
    /// removing every old device (their credentials stop working, their queues are dropped). Contacts see a
    /// safety-number change with the next message. The relay answers with a new recovery code
    /// (`recoveryCode`). A wrong code: `RelayClientError.rejected(403, .recoveryRefused, …)`; too many
    /// attempts: `.rateLimited`. On failure no store is left behind.
    public static func recover(
        name: String, recoveryCode: String, serverURL: String, storePath: String, passphrase: Passphrase? = nil,
        deviceName: String? = nil, cost: KeyDerivationCost = .standard, http: HTTPClient = ParleyHTTP.shared,
        rateLimit: RateLimitPolicy = RateLimitPolicy()
    ) async throws -> ParleyDevice {
        let device = try await establish(
            serverURL: serverURL, storePath: storePath, passphrase: passphrase, deviceName: deviceName, cost: cost, http: http,
            rateLimit: rateLimit
        ) { relay, device in try await relay.recover(name: name, recoveryCode: recoveryCode, device: device) }
        // The store is new, the account's groups are not: the relay lists them (members, admins, version), as for a
        // linked device. If that fails the device learns each group at its next event, as before.
        try? await device.refreshGroups()
        return device
    }

    /// A new store with a new identity, enrolled at the relay as a first device by `enroll` (registration or
    /// recovery), its prekeys published.
    private static func establish(
        serverURL: String, storePath: String, passphrase: Passphrase?, deviceName: String?, cost: KeyDerivationCost,
        http: HTTPClient, rateLimit: RateLimitPolicy,
        enroll: (RelayClient, NewDeviceKeys) async throws -> DeviceCredentials
    ) async throws -> ParleyDevice {
        let random = SystemRandom.shared
        let identity = try IdentityKeyPair.generate(using: random)
        let registrationId = Self.newRegistrationId(random)
        let store = try DeviceStore.create(at: storePath, identity: identity, registrationId: registrationId, passphrase: passphrase, cost: cost)
        do {
            let keys = try KeyManager().registrationKeys(store: store, now: Self.nowSeconds(), random: random)
            guard let signed = keys.signedPreKey else { throw ClientError.invalidArgument("no signed prekey generated") }
            let device = NewDeviceKeys(
                registrationId: registrationId, identityKey: Data(identity.identityKey.serialized),
                signedPreKey: Self.wire(signed), oneTimePreKeys: keys.oneTimePreKeys.map(Self.wire), name: deviceName,
                kyberLastResortPreKey: keys.kyberLastResortPreKey.map(Self.wire))
            let anonymous = RelayClient(baseURL: serverURL, http: http, rateLimit: rateLimit)
            let credentials = try await enroll(anonymous, device)
            let account = LocalAccount(
                name: credentials.account, deviceId: credentials.deviceId, credential: credentials.credential, serverURL: serverURL)
            try store.saveAccount(account)
            // One-time Kyber prekeys do not fit an unauthenticated request: they go with the first authenticated
            // upload. If it fails the account stands anyway; the keys are dropped from the store and key maintenance
            // publishes a new batch when the relay's notice asks for it.
            do {
                _ = try await anonymous.authenticated(as: credentials).uploadPreKeys(
                    UploadPreKeysRequest(kyberOneTimePreKeys: keys.kyberOneTimePreKeys.map(Self.wire)))
            } catch {
                for key in keys.kyberOneTimePreKeys { try? store.removeKyberPreKey(id: key.id) }
            }
            return ParleyDevice(store: store, account: account, http: http, rateLimit: rateLimit, recoveryCode: credentials.recoveryCode)
        } catch {
            try? store.close()
            StoreFiles(path: storePath).removeAll()
            throw error
        }
    }

    /// Opens a registered device's store. A store whose key rows were restored from an older copy
    /// together with their ledger (`storeRolledBack`) is reset first (its sessions and sender keys
    /// are discarded: `DeviceStore.resetAfterRollback`); `rollbackReset` then says what went.
    public static func open(
        storePath: String, passphrase: Passphrase? = nil, http: HTTPClient = ParleyHTTP.shared,
        rateLimit: RateLimitPolicy = RateLimitPolicy()
    ) throws -> ParleyDevice {
        try open(storePath: storePath, unlock: passphrase.map(StoreUnlock.passphrase), http: http, rateLimit: rateLimit)
    }

    /// `open(storePath:passphrase:)` with a passphrase or a `StoreKey` from an earlier unlock (no Argon2id).
    public static func open(
        storePath: String, unlock: StoreUnlock?, http: HTTPClient = ParleyHTTP.shared,
        rateLimit: RateLimitPolicy = RateLimitPolicy()
    ) throws -> ParleyDevice {
        let store: DeviceStore
        var reset: RollbackReset? = nil
        do {
            store = try DeviceStore.open(at: storePath, unlock: unlock)
        } catch .storeRolledBack {
            // The key the first attempt established opens it again without a second Argon2id run.
            reset = try DeviceStore.resetAfterRollback(at: storePath, unlock: unlock)
            store = try DeviceStore.open(at: storePath, unlock: unlock)
        }
        guard let account = try store.account() else {
            try? store.close()
            throw ClientError.notRegistered
        }
        return ParleyDevice(store: store, account: account, http: http, rollbackReset: reset, rateLimit: rateLimit)
    }

    /// Wraps an existing store whose account is recorded (e.g. one made by linking).
    public static func attach(
        store: DeviceStore, http: HTTPClient = ParleyHTTP.shared, rateLimit: RateLimitPolicy = RateLimitPolicy()
    ) throws -> ParleyDevice {
        guard let account = try store.account() else { throw ClientError.notRegistered }
        return ParleyDevice(store: store, account: account, http: http, rateLimit: rateLimit)
    }

    /// Closes the connection (if any) and the store.
    public func close() async {
        closed = true
        await disconnect()
        // Let an in-flight send finish its store update (bounded: a request times out anyway).
        let deadline = ContinuousClock.now + .seconds(35)
        while flushing && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        for continuation in subscribers.values { continuation.finish() }
        subscribers = [:]
        try? store.close()
    }

    // MARK: events

    /// A stream of everything that happens from now on (several streams may be open).
    public func events() -> AsyncStream<ClientEvent> {
        let (stream, continuation) = AsyncStream<ClientEvent>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = UUID()
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        return stream
    }

    private func unsubscribe(_ id: UUID) { subscribers[id] = nil }

    func emit(_ event: ClientEvent) {
        for continuation in subscribers.values { continuation.yield(event) }
    }

    // MARK: identity

    /// The safety number with `peer` (compare it out of band).
    nonisolated public func safetyNumber(with peer: String) throws -> SafetyNumber {
        guard let remote = try knownIdentity(of: peer) else { throw ClientError.invalidArgument("no session with \(peer) yet: send or receive a message first") }
        return try SafetyNumber(
            localId: Array(account.name.utf8), localKey: try store.identityKeyPair().identityKey,
            remoteId: Array(peer.utf8), remoteKey: remote)
    }

    /// Marks `peer`'s current identity key as verified: a later change is refused until the
    /// user trusts the new key.
    nonisolated public func verify(_ peer: String) throws {
        let identities = try knownIdentities(of: peer)
        guard !identities.isEmpty else { throw ClientError.invalidArgument("no identity known for \(peer)") }
        try store.transaction { store in
            for identity in identities { _ = try store.setVerified(true, for: identity.address) }
            try store.acknowledgeIdentityChange(account: peer)
        }
    }

    /// The change of `peer`'s safety number the user has not looked at yet (commands that send to
    /// or show `peer` warn about it), or nil.
    nonisolated public func pendingIdentityChange(of peer: String) throws -> IdentityChangeNotice? {
        try store.pendingIdentityChange(account: peer)
    }

    /// The user was shown the safety number with `peer`: a pending change stops warning.
    nonisolated public func acknowledgeSafetyNumber(with peer: String) throws {
        try store.acknowledgeIdentityChange(account: peer)
    }

    nonisolated public func isVerified(_ peer: String) throws -> Bool {
        try knownIdentities(of: peer).contains { $0.verified }
    }

    /// Accepts `peer`'s new identity key (after comparing safety numbers): fetches the key the
    /// relay publishes now, records it unverified for every device, drops the old sessions.
    public func trustNewIdentity(of peer: String) async throws {
        let bundles = try await relay.bundles(account: peer)
        try store.transaction { store in
            for bundle in bundles.devices {
                let address = ProtocolAddress(name: peer, deviceId: bundle.deviceId)
                let key = try IdentityKey(serialized: Array(bundle.identityKey))
                _ = try store.saveIdentity(key, for: address)
                try store.deleteSession(for: address)
                try store.resolveIdentityChange(account: peer, trustedKey: key)
            }
        }
    }

    nonisolated func knownIdentities(of peer: String) throws -> [RemoteIdentity] {
        var result: [RemoteIdentity] = []
        var ids = Set(try store.contactDevices(account: peer).map(\.deviceId))
        ids.formUnion(try store.sessionDeviceIds(for: peer))
        for id in ids.sorted() {
            if let identity = try store.remoteIdentity(for: ProtocolAddress(name: peer, deviceId: id)) { result.append(identity) }
        }
        return result
    }

    nonisolated func knownIdentity(of peer: String) throws -> IdentityKey? { try knownIdentities(of: peer).first?.identityKey }

    // MARK: keys

    /// Refills one-time prekeys (EC and Kyber) when the relay says they run low, rotates the
    /// signed prekey and the last-resort Kyber prekey when due (or publishes a last-resort Kyber
    /// prekey when the relay has none: a device registered before PQXDH), and forgets
    /// processed-envelope ids older than the relay's retention.
    public func maintainKeys() async throws {
        try await recoveringFromRollback { try await maintainKeysOnce() }
    }

    private func maintainKeysOnce() async throws {
        // The relay keeps undelivered envelopes 30 days at most: older processed ids cannot come again.
        try store.pruneProcessedEnvelopes(before: Self.nowMillis() - 31 * 24 * 3600 * 1000)
        try pruneRepairState(now: Self.nowMillis())
        let status = try await relay.preKeyStatus()
        let now = Self.nowSeconds()
        let rotated = try keyManager.rotateSignedPreKeyIfDue(store: store, now: now, random: random)
        let refill = keyManager.needsRefill(remaining: status.oneTimePreKeyCount) ? try keyManager.refill(store: store, random: random) : []
        var lastResort = try keyManager.rotateKyberLastResortIfDue(store: store, now: now, random: random)
        if lastResort == nil && !status.hasKyberLastResortPreKey {
            lastResort = try keyManager.currentKyberLastResort(store: store)
        }
        let kyberRefill = keyManager.needsRefill(remaining: status.kyberOneTimePreKeyCount)
            ? try keyManager.refillKyber(store: store, now: now, random: random) : []
        if rotated != nil || !refill.isEmpty || lastResort != nil || !kyberRefill.isEmpty {
            _ = try await relay.uploadPreKeys(
                UploadPreKeysRequest(
                    signedPreKey: rotated.map(Self.wire), oneTimePreKeys: refill.map(Self.wire),
                    kyberLastResortPreKey: lastResort.map(Self.wire), kyberOneTimePreKeys: kyberRefill.map(Self.wire)))
        }
    }

    /// Which new sessions this device agrees to (`requirePostQuantum` by default for stores made with PQXDH,
    /// `allowClassical` for older ones until changed).
    nonisolated public func sessionPolicy() throws -> SessionPolicy { try store.sessionPolicy() }

    /// Changes which new sessions this device agrees to; existing sessions are not affected.
    nonisolated public func setSessionPolicy(_ policy: SessionPolicy) throws { try store.setSessionPolicy(policy) }

    // MARK: helpers

    static func wire(_ record: SignedPreKeyRecord) -> SignedPreKey {
        SignedPreKey(keyId: record.id, publicKey: Data(record.keyPair.publicKey.serialized), signature: Data(record.signature))
    }

    static func wire(_ record: PreKeyRecord) -> OneTimePreKey {
        OneTimePreKey(keyId: record.id, publicKey: Data(record.keyPair.publicKey.serialized))
    }

    static func wire(_ record: KyberPreKeyRecord) -> KyberPreKey {
        KyberPreKey(keyId: record.id, publicKey: Data(record.keyPair.publicKey.serialized), signature: Data(record.signature))
    }

    static func bundle(_ wire: DevicePreKeyBundle) throws -> PreKeyBundle {
        PreKeyBundle(
            registrationId: wire.registrationId, deviceId: wire.deviceId, identityKey: try IdentityKey(serialized: Array(wire.identityKey)),
            signedPreKeyId: wire.signedPreKey.keyId, signedPreKey: try PublicKey(serialized: Array(wire.signedPreKey.publicKey)),
            signedPreKeySignature: Array(wire.signedPreKey.signature), preKeyId: wire.oneTimePreKey?.keyId,
            preKey: try wire.oneTimePreKey.map { try PublicKey(serialized: Array($0.publicKey)) },
            kyberPreKey: try wire.kyberPreKey.map { key throws(ProtocolError) in
                try PreKeyBundle.KyberPreKey(id: key.keyId, serializedPublicKey: Array(key.publicKey), signature: Array(key.signature))
            })
    }

    /// A libsignal-style registration id: 14 random bits, never 0.
    static func newRegistrationId(_ random: any RandomSource) -> UInt32 {
        let bytes = random.draw(2, purpose: .other)
        return (UInt32(bytes[0]) << 8 | UInt32(bytes[1])) % 16380 + 1
    }

    static func nowMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// Prekey timestamps and `PreKeyPolicy` periods are in seconds.
    static func nowSeconds() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970)) }

    /// `ws(s)://host:port/v1/ws` for an `http(s)://host:port` relay.
    var webSocketURL: String {
        let base = account.serverURL.hasSuffix("/") ? String(account.serverURL.dropLast()) : account.serverURL
        if base.hasPrefix("https://") { return "wss://" + base.dropFirst("https://".count) + "/v1/ws" }
        if base.hasPrefix("http://") { return "ws://" + base.dropFirst("http://".count) + "/v1/ws" }
        return base + "/v1/ws"
    }
}

extension ParleyDevice {
    /// The devices of `account` as the relay lists them (active devices only). The list of this account
    /// also refreshes the device list this device sends to (a device gone from it is forgotten).
    public func deviceList(of account: String) async throws -> [DeviceInfo] {
        do {
            let devices = try await relay.devices(of: account)
            if account == self.account.name { try? await refreshDevices(of: account) }
            return devices
        } catch RelayClientError.deviceRemoved {
            removedFromAccount = true
            throw RelayClientError.deviceRemoved
        }
    }

    /// Removes device `deviceId` of this account at the relay (`DELETE /v1/devices/{id}`); any device of the
    /// account may remove any other, or itself.
    ///
    /// * Another device: it is forgotten here at once (device list, session, sender-key hand-out records),
    ///   so the next send neither addresses it nor waits for it.
    /// * This device: the store is marked removed (`DeviceStore.markRemovedFromAccount`) and the connection
    ///   closed; from then on this store sends nothing (`ClientError.deviceRemoved`) and does not connect,
    ///   while its history stays readable.
    ///
    /// Throws `ClientError.invalidArgument` when the account has no such device.
    public func removeDevice(_ deviceId: UInt32) async throws {
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
        do {
            try await relay.removeDevice(deviceId)
        } catch RelayClientError.rejected(404, _, _) {
            throw ClientError.invalidArgument("\(account.name) has no device \(deviceId)")
        } catch RelayClientError.deviceRemoved {
            removedFromAccount = true
            throw RelayClientError.deviceRemoved
        }
        if deviceId == account.deviceId {
            try store.markRemovedFromAccount(at: Self.nowMillis())
            removedFromAccount = true
            await disconnect()
        } else {
            try store.forgetDevice(account: account.name, deviceId: deviceId)
            try? await refreshDevices(of: account.name)
        }
    }

    /// The receipts of this account's outgoing message `uid`: per recipient account (each member of a group)
    /// its status, when the relay took it, and per device when it was sent to, delivered to and read on it.
    /// Empty when no such outgoing message is stored.
    public nonisolated func receipts(ofMessage uid: String) throws -> [RecipientReceipts] {
        guard let id = try store.message(uid: uid, sender: account.name) else { return [] }
        return try store.receipts(of: id)
    }

    /// Whether the relay answers at all (`GET /healthz`): nil when it does, else why it cannot be reached in
    /// a few words ("connection refused"; `TransportFailure`). A relay that answers, even with an error, is
    /// reachable.
    public func probeRelay() async -> String? {
        do {
            _ = try await relay.health()
            return nil
        } catch {
            return TransportFailure.reason(error)
        }
    }
}
