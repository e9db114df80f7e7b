import ParleyCrypto
import ParleyProtocol

/// Generates and retires this device's prekeys: the batch published at registration, refills
/// when the relay reports the one-time prekeys running low, and signed-prekey and last-resort
/// Kyber prekey rotation with a grace period for the previous ones. Every change is stored
/// before it is returned for upload.
public struct KeyManager: Sendable {
    public let policy: PreKeyPolicy

    public init(policy: PreKeyPolicy = PreKeyPolicy()) {
        self.policy = policy
    }

    /// What a device publishes: its signed prekey and last-resort Kyber prekey (when new) and
    /// one-time prekeys of both kinds.
    public struct Publication: Sendable {
        public let signedPreKey: SignedPreKeyRecord?
        public let oneTimePreKeys: [PreKeyRecord]
        public let kyberLastResortPreKey: KyberPreKeyRecord?
        public let kyberOneTimePreKeys: [KyberPreKeyRecord]
    }

    /// The keys published at registration: a signed prekey, a last-resort Kyber prekey, and
    /// `policy.batchSize` one-time prekeys and `policy.kyberBatchSize` one-time Kyber prekeys.
    public func registrationKeys(
        store: DeviceStore, now: UInt64, random: any RandomSource = SystemRandom.shared
    ) throws -> Publication {
        try store.transaction { store in
            let signed = try newSignedPreKey(store: store, now: now, random: random)
            let lastResort = try newKyberPreKeys(count: 1, lastResort: true, store: store, now: now, random: random).first
            return Publication(
                signedPreKey: signed, oneTimePreKeys: try newOneTimePreKeys(store: store, random: random),
                kyberLastResortPreKey: lastResort,
                kyberOneTimePreKeys: try newKyberPreKeys(count: policy.kyberBatchSize, lastResort: false, store: store, now: now, random: random))
        }
    }

    /// A new batch of one-time prekeys, with ids never used before on this device.
    public func refill(store: DeviceStore, random: any RandomSource = SystemRandom.shared) throws -> [PreKeyRecord] {
        try store.transaction { store in try newOneTimePreKeys(store: store, random: random) }
    }

    /// A new batch of one-time Kyber prekeys, with ids never used before on this device.
    public func refillKyber(store: DeviceStore, now: UInt64, random: any RandomSource = SystemRandom.shared) throws -> [KyberPreKeyRecord] {
        try store.transaction { store in
            try newKyberPreKeys(count: policy.kyberBatchSize, lastResort: false, store: store, now: now, random: random)
        }
    }

    /// A new signed prekey if the newest is older than the rotation period (nil otherwise), and
    /// removal of replaced ones past the grace period. The newest two are always kept.
    public func rotateSignedPreKeyIfDue(
        store: DeviceStore, now: UInt64, random: any RandomSource = SystemRandom.shared
    ) throws -> SignedPreKeyRecord? {
        try store.transaction { store in
            let existing = try store.signedPreKeys()  // oldest first
            var created: SignedPreKeyRecord? = nil
            if let newest = existing.last, now < newest.timestamp + policy.signedPreKeyRotation {
                created = nil
            } else {
                created = try newSignedPreKey(store: store, now: now, random: random)
            }
            let all = existing + (created.map { [$0] } ?? [])
            // A replaced key's grace runs from when its successor was made.
            for (index, record) in all.enumerated().dropLast(2) {
                let replacedAt = all[index + 1].timestamp
                if now >= replacedAt + policy.signedPreKeyGrace { try store.removeSignedPreKey(id: record.id) }
            }
            return created
        }
    }

    /// A new last-resort Kyber prekey if there is none (a store made before PQXDH) or the newest
    /// is older than the rotation period (the signed prekey's), nil otherwise; replaced ones are
    /// removed past the grace period, the newest two always kept. Removing a key also forgets the
    /// base keys it was used with.
    public func rotateKyberLastResortIfDue(
        store: DeviceStore, now: UInt64, random: any RandomSource = SystemRandom.shared
    ) throws -> KyberPreKeyRecord? {
        try store.transaction { store in
            let existing = try store.kyberPreKeys().filter(\.isLastResort)  // oldest first
            var created: KyberPreKeyRecord? = nil
            if existing.last.map({ now >= $0.timestamp + policy.signedPreKeyRotation }) ?? true {
                created = try newKyberPreKeys(count: 1, lastResort: true, store: store, now: now, random: random).first
            }
            let all = existing + (created.map { [$0] } ?? [])
            for (index, record) in all.enumerated().dropLast(2) {
                let replacedAt = all[index + 1].timestamp
                if now >= replacedAt + policy.signedPreKeyGrace { try store.removeKyberPreKey(id: record.id) }
            }
            return created
        }
    }

    /// The newest last-resort Kyber prekey held (to publish it again when the relay lost it).
    public func currentKyberLastResort(store: DeviceStore) throws -> KyberPreKeyRecord? {
        try store.kyberPreKeys().last(where: \.isLastResort)
    }

    /// Whether the relay's count of remaining one-time prekeys (EC or Kyber) calls for a refill.
    public func needsRefill(remaining: Int) -> Bool { remaining < policy.refillThreshold }

    // MARK: generation

    private func newOneTimePreKeys(store: DeviceStore, random: any RandomSource) throws -> [PreKeyRecord] {
        let count = UInt32(policy.batchSize)
        let first = try nextIds("prekey", count: count, store: store)
        var records: [PreKeyRecord] = []
        for offset in 0..<count {
            let record = PreKeyRecord(id: wrap(first, offset), keyPair: try PrivateKey.generate(using: random))
            try store.storePreKey(record)
            records.append(record)
        }
        return records
    }

    private func newSignedPreKey(store: DeviceStore, now: UInt64, random: any RandomSource) throws -> SignedPreKeyRecord {
        let id = try nextIds("signed_prekey", count: 1, store: store)
        let record = try SignedPreKeyRecord.generate(id: id, identity: try store.identityKeyPair(), timestamp: now, using: random)
        try store.storeSignedPreKey(record)
        return record
    }

    /// Kyber prekeys take their ids from one counter, last-resort and one-time alike, so an id
    /// names one key only.
    private func newKyberPreKeys(
        count: Int, lastResort: Bool, store: DeviceStore, now: UInt64, random: any RandomSource
    ) throws -> [KyberPreKeyRecord] {
        guard count > 0 else { return [] }
        let first = try nextIds("kyber_prekey", count: UInt32(count), store: store)
        let identity = try store.identityKeyPair()
        var records: [KyberPreKeyRecord] = []
        for offset in 0..<UInt32(count) {
            let record = try KyberPreKeyRecord.generate(
                id: wrap(first, offset), identity: identity, timestamp: now, lastResort: lastResort, using: random)
            try store.storeKyberPreKey(record)
            records.append(record)
        }
        return records
    }

    /// Reserves `count` ids from the device's counter, within 1...maxPreKeyId (wrapping).
    private func nextIds(_ counter: String, count: UInt32, store: DeviceStore) throws -> UInt32 {
        let raw = try store.reserveCounter(counter, count: count)
        return wrap(raw, 0)
    }

    private func wrap(_ base: UInt32, _ offset: UInt32) -> UInt32 {
        let span = UInt64(PreKeyPolicy.maxPreKeyId)
        return UInt32((UInt64(base) - 1 + UInt64(offset)) % span + 1)
    }
}
