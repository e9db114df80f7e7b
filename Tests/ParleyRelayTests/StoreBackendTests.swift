import Foundation
import GRDB
import NIOConcurrencyHelpers
import ParleyCrypto
import ParleyProtocol
import ParleyWire
import PostgresNIO
import Testing

@testable import ParleyRelay

/// One suite for every storage backend: each test runs on SQLite and on PostgreSQL (`TestBackend.available`)
/// through the `RelayStore` protocol only, so both backends are held to the same behaviour.
@Suite("Relay store, every backend", .timeLimit(.minutes(4)))
struct StoreBackendTests {
    // MARK: helpers

    static let limits = RelayLimits()

    /// Registers an account with `devices` active devices (1 at registration, the others linked and approved).
    static func account(
        _ store: any RelayStore, _ prefix: String, devices: Int = 1, oneTime: Int = 5
    ) async throws -> [AuthenticatedDevice] {
        let name = Fixtures.uniqueName(prefix)
        let accountId = try await store.createAccount(
            name: name, device: Fixtures.keys(oneTimeCount: oneTime), credentialHash: Fixtures.bytes(32), now: 1_000)
        var result = [AuthenticatedDevice(accountId: accountId, account: name, deviceId: 1)]
        for index in 1..<max(1, devices) {
            let code = "code-\(UUID().uuidString)"
            try await store.createLinkCode(result[0].address, code: code, now: 1_000, expiresAt: 10_000_000_000_000)
            let (_, deviceId) = try await store.claimLinkCode(
                code: code, device: Fixtures.keys(oneTimeCount: oneTime), credentialHash: Fixtures.bytes(32), now: 1_000 + Int64(index),
                maxDevices: 6)
            try await store.approveLink(
                accountId: accountId, code: code, provisioningBlob: Fixtures.bytes(8), awaitIdentityUpload: false, now: 1_000)
            result.append(AuthenticatedDevice(accountId: accountId, account: name, deviceId: deviceId))
        }
        return result
    }

    /// A 1:1 submission addressing every active device of `recipient` (current registration ids), with copies for
    /// the sender's other devices.
    static func direct(
        _ store: any RelayStore, from sender: AuthenticatedDevice, to recipient: String, content: Data = Fixtures.bytes(40),
        now: Int64 = 2_000, expiresAt: Int64 = 10_000_000_000_000
    ) async throws -> MessageSubmission {
        let theirs = try await store.devices(account: recipient)
        let mine = try await store.devices(account: sender.account)
        let messages = theirs.filter { recipient != sender.account || $0.deviceId != sender.deviceId }.map {
            OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: content)
        }
        let own =
            recipient == sender.account
            ? []
            : mine.filter { $0.deviceId != sender.deviceId }.map {
                OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: 1, content: content)
            }
        return MessageSubmission(
            sender: sender, payload: .direct(recipient: recipient, messages: messages, own: own), clientTimestamp: 7,
            serverTimestamp: now, expiresAt: expiresAt)
    }

    /// Limits with a different group member cap.
    static func limits(maxGroupMembers: Int) -> RelayLimits {
        var limits = RelayLimits()
        limits.maxGroupMembers = maxGroupMembers
        return limits
    }

    /// One fetch of one account's bundles (all its devices, or `deviceIds`), nothing refused.
    static func take(_ store: any RelayStore, _ account: String, _ deviceIds: [UInt32]? = nil) async throws -> [DevicePreKeyBundle] {
        let result = try await store.takePreKeyBundles(
            [BundleRequest(account: account, deviceIds: deviceIds)], charge: { _ in }, mayHandOut: { _ in true })
        return result.bundles.first?.devices ?? []
    }

    /// `count` concurrent bundle fetches of `account`'s device 1, spread over `stores` in turn (two
    /// stores: two relay nodes); the key id `pick` finds in each bundle handed out.
    static func takeConcurrently(
        _ count: Int, from stores: [any RelayStore], _ account: String, pick: @escaping @Sendable (DevicePreKeyBundle) -> UInt32?
    ) async throws -> [UInt32] {
        try await withThrowingTaskGroup(of: UInt32?.self) { group in
            for index in 0..<count {
                let store = stores[index % stores.count]
                group.addTask { try await take(store, account, [1]).first.flatMap(pick) }
            }
            var result: [UInt32] = []
            for try await key in group { if let key { result.append(key) } }
            return result
        }
    }

    static func commitOne(_ store: any RelayStore, _ submission: MessageSubmission, limits: RelayLimits = limits) async throws
        -> Result<SubmissionReceipt, RelayError>
    {
        let results = try await store.commit([submission], limits: limits)
        #expect(results.count == 1)
        return results[0]
    }

    // MARK: accounts and devices

    @Test(arguments: TestBackend.available)
    func accountsAndDevices(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let hash = Fixtures.bytes(32)
        let name = Fixtures.uniqueName("acct")
        let keys = Fixtures.keys(registrationId: 1234, oneTimeCount: 3)
        let accountId = try await store.createAccount(name: name, device: keys, credentialHash: hash, now: 5_000)
        await #expect(throws: RelayError.nameTaken) {
            _ = try await store.createAccount(name: name, device: keys, credentialHash: hash, now: 5_001)
        }
        let auth = try #require(try await store.deviceAuth(account: name, deviceId: 1))
        #expect(auth.accountId == accountId)
        #expect(auth.credentialHash == hash)
        #expect(auth.active)
        #expect(try await store.deviceAuth(account: name, deviceId: 2) == nil)
        #expect(try await store.deviceAuth(account: "nobody-here", deviceId: 1) == nil)

        let devices = try await store.devices(account: name)
        #expect(devices.map(\.deviceId) == [1])
        #expect(devices.first?.registrationId == 1234)
        #expect(devices.first?.createdAt == 5_000)
        #expect(devices.first?.lastSeen == nil)
        await #expect(throws: RelayError.notFound("unknown account")) { _ = try await store.devices(account: "nobody-here") }

        #expect(try await store.lastSeen(account: name) == nil)
        let address = DeviceAddress(accountId: accountId, deviceId: 1)
        try await store.touchDevices([DeviceTouch(address: address, now: 7_000), DeviceTouch(address: address, now: 9_000)])
        #expect(try await store.lastSeen(account: name) == 9_000)
        try await store.touchDevice(address, now: 9_500)
        #expect(try await store.devices(account: name).first?.lastSeen == 9_500)

        await #expect(throws: RelayError.notFound("unknown device")) {
            try await store.removeDevice(accountId: accountId, deviceId: 9)
        }
    }

    // MARK: prekeys

    @Test(arguments: TestBackend.available)
    func preKeysAreHandedOutOnceInKeyOrder(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let bobIdentity = Fixtures.identity()
        let bobName = Fixtures.uniqueName("bob")
        let bobId = try await store.createAccount(
            name: bobName, device: Fixtures.keys(oneTimeCount: 0, identity: bobIdentity), credentialHash: Fixtures.bytes(32),
            now: 1_000)
        let bob = AuthenticatedDevice(accountId: bobId, account: bobName, deviceId: 1)
        #expect(try await store.oneTimePreKeyCount(bob.address) == 0)
        let keys = (1...4).map { OneTimePreKey(keyId: UInt32(10 - $0), publicKey: Fixtures.bytes(33)) }
        // The same key id twice in one upload: the last one counts.
        let replacement = OneTimePreKey(keyId: 9, publicKey: Fixtures.bytes(33))
        #expect(try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: keys + [replacement]) == 4)
        let signed = Fixtures.signedPreKey(id: 77, identity: bobIdentity)
        #expect(try await store.storePreKeys(bob.address, identityKey: nil, signed: signed, oneTime: []) == 4)
        // A signed prekey that does not verify under the stored identity key: refused, nothing of the upload stored.
        let forged = Fixtures.signedPreKey(id: 78, identity: Fixtures.identity())
        await #expect(throws: RelayError.invalidField("signedPreKey.signature does not verify under the identity key")) {
            _ = try await store.storePreKeys(
                bob.address, identityKey: nil, signed: forged, oneTime: [OneTimePreKey(keyId: 500, publicKey: Fixtures.publicKey())])
        }
        #expect(try await store.oneTimePreKeyCount(bob.address) == 4)

        var handedOut: [UInt32] = []
        for _ in 0..<5 {
            let bundles = try await Self.take(store, bob.account)
            #expect(bundles.count == 1)
            #expect(bundles.first?.signedPreKey == signed)
            if let key = bundles.first?.oneTimePreKey {
                handedOut.append(key.keyId)
                if key.keyId == 9 { #expect(key.publicKey == replacement.publicKey) }
            }
        }
        #expect(handedOut == [6, 7, 8, 9])
        #expect(try await store.oneTimePreKeyCount(bob.address) == 0)
        #expect(try await Self.take(store, bob.account, [5]).isEmpty)
        let unknown = try await store.takePreKeyBundles(
            [BundleRequest(account: "nobody-here", deviceIds: nil)], charge: { _ in }, mayHandOut: { _ in true })
        #expect(unknown.bundles.isEmpty)
        #expect(unknown.unknownAccounts == ["nobody-here"])

        // A new identity drops the old identity's one-time prekeys; the signed prekey must verify under the new one.
        _ = try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: keys)
        let newIdentity = Fixtures.identity()
        let identity = Data(newIdentity.identityKey.serialized)
        await #expect(throws: RelayError.invalidField("signedPreKey.signature does not verify under the identity key")) {
            _ = try await store.storePreKeys(bob.address, identityKey: identity, signed: signed, oneTime: [])
        }
        #expect(try await store.oneTimePreKeyCount(bob.address) == 4)
        let resigned = Fixtures.signedPreKey(id: 79, identity: newIdentity)
        #expect(try await store.storePreKeys(bob.address, identityKey: identity, signed: resigned, oneTime: []) == 0)
        #expect(try await Self.take(store, bob.account, [1]).first?.identityKey == identity)
    }

    /// At most `maxStoredOneTimePreKeys` one-time prekeys per device: an upload that would leave more stores nothing.
    @Test(arguments: TestBackend.available)
    func storedOneTimePreKeysAreCapped(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let bob = try await Self.account(store, "bob", oneTime: 0)[0]
        let cap = RelayLimits.maxStoredOneTimePreKeys
        #expect(try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: Fixtures.oneTimePreKeys(cap - 1)) == cap - 1)
        let over = Fixtures.oneTimePreKeys(2, firstKeyId: UInt32(cap + 10))
        await #expect(throws: RelayError.tooManyItems("at most \(cap) one-time prekeys stored per device (this upload would leave \(cap + 1))")) {
            _ = try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: over)
        }
        #expect(try await store.oneTimePreKeyCount(bob.address) == cap - 1)
        // Replacing existing key ids does not add to the count.
        #expect(try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: Fixtures.oneTimePreKeys(5)) == cap - 1)
        #expect(try await store.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: Array(over.prefix(1))) == cap)
    }

    /// A batched fetch: several accounts in one transaction; `charge` sees the number of device bundles first and
    /// can refuse the whole fetch (nothing taken); `mayHandOut` is asked per device that has a key left, and a
    /// device it refuses comes without one (its key stays).
    @Test(arguments: TestBackend.available)
    func batchedBundleFetchChargesAndLimitsHandOuts(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let bob = try await Self.account(store, "bob", devices: 2, oneTime: 2)
        let carol = try await Self.account(store, "carol", oneTime: 0)[0]
        let requests = [
            BundleRequest(account: bob[0].account, deviceIds: nil), BundleRequest(account: "nobody-here", deviceIds: nil),
            BundleRequest(account: carol.account, deviceIds: [1, 7]),
        ]
        await #expect(throws: RelayError.rateLimitedFor(seconds: 3)) {
            _ = try await store.takePreKeyBundles(requests, charge: { _ in throw RelayError.rateLimitedFor(seconds: 3) }, mayHandOut: { _ in true })
        }
        #expect(try await store.oneTimePreKeyCount(bob[0].address) == 2)
        #expect(try await store.oneTimePreKeyCount(bob[1].address) == 2)

        let charged = Counter()
        let asked = Recorder<DeviceAddress>()
        let refused = bob[1].address
        let result = try await store.takePreKeyBundles(
            requests, charge: { charged.add($0) },
            mayHandOut: { address in
                asked.append(address)
                return address != refused
            })
        #expect(charged.value == 3)
        #expect(result.unknownAccounts == ["nobody-here"])
        #expect(result.bundles.map(\.account) == [bob[0].account, carol.account])
        #expect(result.bundles[0].devices.map(\.deviceId) == [bob[0].deviceId, bob[1].deviceId])
        #expect(result.bundles[0].devices[0].oneTimePreKey != nil)
        #expect(result.bundles[0].devices[1].oneTimePreKey == nil)
        #expect(result.bundles[1].devices.map(\.deviceId) == [1])
        #expect(result.bundles[1].devices[0].oneTimePreKey == nil)
        // Carol has no key left: she was not asked about.
        #expect(Set(asked.values) == Set([bob[0].address, bob[1].address]))
        #expect(try await store.oneTimePreKeyCount(bob[0].address) == 1)
        #expect(try await store.oneTimePreKeyCount(bob[1].address) == 2)
    }

    /// Many fetches of one bundle at the same instant: every one-time prekey goes to exactly one of them.
    @Test(arguments: TestBackend.available)
    func concurrentFetchesNeverShareAOneTimePreKey(_ backend: TestBackend) async throws {
        let stores = try await backend.makeStorePair()  // on PostgreSQL, two relay nodes
        defer { stores.closeLater() }
        let (first, second) = (stores.first, stores.second)
        let bob = try await Self.account(first, "bob", oneTime: 0)[0]
        let keys = (1...20).map { OneTimePreKey(keyId: UInt32($0), publicKey: Fixtures.bytes(33)) }
        _ = try await first.storePreKeys(bob.address, identityKey: nil, signed: nil, oneTime: keys)
        let keyIds = try await Self.takeConcurrently(40, from: [first, second], bob.account) { $0.oneTimePreKey?.keyId }
        #expect(keyIds.count == 20)
        #expect(Set(keyIds) == Set(1...20))
        #expect(try await first.oneTimePreKeyCount(bob.address) == 0)
    }

    // MARK: Kyber prekeys

    /// Registers an account whose device has `identity` and the last-resort Kyber prekey `lastResort`, no one-time
    /// prekeys.
    static func kyberAccount(_ store: any RelayStore, identity: IdentityKeyPair, lastResort: KyberPreKey?) async throws
        -> AuthenticatedDevice
    {
        let name = Fixtures.uniqueName("kyber")
        let accountId = try await store.createAccount(
            name: name, device: KyberPreKeyTests.keys(identity: identity, lastResort: lastResort, ecOneTime: 0),
            credentialHash: Fixtures.bytes(32), now: 1_000)
        return AuthenticatedDevice(accountId: accountId, account: name, deviceId: 1)
    }

    static func storeKyber(
        _ store: any RelayStore, _ device: AuthenticatedDevice, lastResort: KyberPreKey? = nil, oneTime: [KyberPreKey],
        signedBy identity: IdentityKeyPair
    ) async throws -> PreKeyCounts {
        try await store.storePreKeys(
            device.address, identityKey: nil, signed: nil, oneTime: [], kyberLastResort: lastResort, kyberOneTime: oneTime,
            kyberSignedBy: Data(identity.identityKey.serialized))
    }

    /// One-time Kyber prekeys are handed out once, lowest id first, then the last-resort one every time (kept);
    /// a device over its hand-out budget gets the last-resort one and keeps its one-time ones; uploads that would
    /// replace the last-resort key with a one-time one, that were verified under another identity key, or that
    /// would leave more than the cap store nothing; a new identity drops every Kyber prekey.
    @Test(arguments: TestBackend.available)
    func kyberPreKeysOneTimeOnceThenTheLastResortOne(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let identity = Fixtures.identity()
        let lastResort = try KyberPreKeyTests.kyberPreKey(id: 100, signer: identity)
        let bob = try await Self.kyberAccount(store, identity: identity, lastResort: lastResort)
        #expect(try await store.preKeyCounts(bob.address) == PreKeyCounts(oneTime: 0, kyberOneTime: 0, hasKyberLastResort: true))
        let oneTime = try [3, 1, 2].map { try KyberPreKeyTests.kyberPreKey(id: UInt32($0), signer: identity) }
        #expect(
            try await Self.storeKyber(store, bob, oneTime: oneTime, signedBy: identity)
                == PreKeyCounts(oneTime: 0, kyberOneTime: 3, hasKyberLastResort: true))

        // Refused uploads store nothing.
        let clash = try KyberPreKeyTests.kyberPreKey(id: 100, signer: identity)
        let extra = try KyberPreKeyTests.kyberPreKey(id: 50, signer: identity)
        await #expect(throws: RelayError.invalidField("Kyber prekey id 100 is the last-resort key's")) {
            _ = try await Self.storeKyber(store, bob, oneTime: [extra, clash], signedBy: identity)
        }
        await #expect(throws: RelayError.invalidField("the Kyber prekeys are signed by another identity key than the device's")) {
            _ = try await Self.storeKyber(store, bob, oneTime: [extra], signedBy: Fixtures.identity())
        }
        #expect(try await store.preKeyCounts(bob.address).kyberOneTime == 3)

        // Over the hand-out budget: the last-resort key, the one-time ones stay.
        let refused = try await store.takePreKeyBundles(
            [BundleRequest(account: bob.account, deviceIds: nil)], charge: { _ in }, mayHandOut: { _ in false })
        #expect(refused.bundles.first?.devices.first?.kyberPreKey == lastResort)
        #expect(try await store.preKeyCounts(bob.address).kyberOneTime == 3)

        var handedOut: [UInt32] = []
        for _ in 0..<5 {
            let bundle = try #require(try await Self.take(store, bob.account).first)
            let kyber = try #require(bundle.kyberPreKey)
            handedOut.append(kyber.keyId)
            if kyber.keyId != 100 { #expect(oneTime.contains(kyber)) }
        }
        #expect(handedOut == [1, 2, 3, 100, 100])
        #expect(try await store.preKeyCounts(bob.address) == PreKeyCounts(oneTime: 0, kyberOneTime: 0, hasKyberLastResort: true))

        // A new last-resort key replaces the old one.
        let rotated = try KyberPreKeyTests.kyberPreKey(id: 101, signer: identity)
        _ = try await Self.storeKyber(store, bob, lastResort: rotated, oneTime: [], signedBy: identity)
        #expect(try await Self.take(store, bob.account).first?.kyberPreKey == rotated)

        // The cap on stored one-time Kyber prekeys: an upload that would leave more stores nothing.
        let cap = RelayLimits.maxStoredKyberOneTimePreKeys
        let pair = try KEMKeyPair.generate(.kyber1024, using: SystemRandom.shared)
        let signature = try XEdDSA.sign(pair.publicKey.serialized, with: identity.privateKey, using: SystemRandom.shared)
        let many = (1...cap).map { KyberPreKey(keyId: UInt32(1_000 + $0), publicKey: Data(pair.publicKey.serialized), signature: Data(signature)) }
        #expect(try await Self.storeKyber(store, bob, oneTime: many, signedBy: identity).kyberOneTime == cap)
        await #expect(throws: RelayError.tooManyItems("at most \(cap) one-time Kyber prekeys stored per device (this upload would leave \(cap + 1))")) {
            _ = try await Self.storeKyber(store, bob, oneTime: [extra], signedBy: identity)
        }
        #expect(try await store.preKeyCounts(bob.address).kyberOneTime == cap)

        // A new identity: every Kyber prekey (signed by the old one) is gone; bundles come without one.
        let newIdentity = Fixtures.identity()
        _ = try await store.storePreKeys(
            bob.address, identityKey: Data(newIdentity.identityKey.serialized), signed: Fixtures.signedPreKey(id: 9, identity: newIdentity),
            oneTime: [], kyberLastResort: nil, kyberOneTime: [], kyberSignedBy: nil)
        #expect(try await store.preKeyCounts(bob.address) == PreKeyCounts(oneTime: 0, kyberOneTime: 0, hasKyberLastResort: false))
        #expect(try await Self.take(store, bob.account).first?.kyberPreKey == nil)
        #expect(try await store.identityKey(bob.address) == Data(newIdentity.identityKey.serialized))
    }

    /// Many fetches of one device's bundle at the same instant (on PostgreSQL from two nodes): every one-time Kyber
    /// prekey goes to exactly one of them, and every other fetch gets the last-resort key.
    @Test(arguments: TestBackend.available)
    func concurrentFetchesNeverShareAOneTimeKyberPreKey(_ backend: TestBackend) async throws {
        let stores = try await backend.makeStorePair()  // on PostgreSQL, two relay nodes
        defer { stores.closeLater() }
        let (first, second) = (stores.first, stores.second)
        let identity = Fixtures.identity()
        let lastResort = try KyberPreKeyTests.kyberPreKey(id: 500, signer: identity)
        let bob = try await Self.kyberAccount(first, identity: identity, lastResort: lastResort)
        let oneTime = try (1...20).map { try KyberPreKeyTests.kyberPreKey(id: UInt32($0), signer: identity) }
        _ = try await Self.storeKyber(first, bob, oneTime: oneTime, signedBy: identity)
        let keyIds = try await Self.takeConcurrently(40, from: [first, second], bob.account) { $0.kyberPreKey?.keyId }
        #expect(keyIds.count == 40)
        #expect(keyIds.filter { $0 != 500 }.count == 20)
        #expect(Set(keyIds.filter { $0 != 500 }) == Set(1...20))
        #expect(try await first.preKeyCounts(bob.address) == PreKeyCounts(oneTime: 0, kyberOneTime: 0, hasKyberLastResort: true))
    }

    // MARK: linking

    @Test(arguments: TestBackend.available)
    func linkingFlow(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        await #expect(throws: RelayError.notFound("unknown link code")) {
            _ = try await store.claimLinkCode(code: "nope", device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 1, maxDevices: 6)
        }
        try await store.createLinkCode(alice.address, code: "c1", now: 1_000, expiresAt: 2_000)
        #expect(try await store.linkInfo(accountId: alice.accountId, code: "c1", now: 1_000).state == .open)
        let keys = Fixtures.keys(registrationId: 555)
        let (name, deviceId) = try await store.claimLinkCode(
            code: "c1", device: keys, credentialHash: Fixtures.bytes(32), now: 1_100, maxDevices: 6)
        #expect(name == alice.account)
        #expect(deviceId == 2)
        await #expect(throws: RelayError.linkCodeUnavailable) {
            _ = try await store.claimLinkCode(code: "c1", device: keys, credentialHash: Fixtures.bytes(32), now: 1_100, maxDevices: 6)
        }
        let info = try await store.linkInfo(accountId: alice.accountId, code: "c1", now: 1_200)
        #expect(info.state == .claimed)
        #expect(info.deviceId == 2)
        #expect(info.registrationId == 555)
        #expect(info.identityKey == keys.identityKey)
        // Pending: not listed, cannot authenticate as active, link status readable.
        #expect(try await store.devices(account: alice.account).map(\.deviceId) == [1])
        #expect(try await store.deviceAuth(account: alice.account, deviceId: 2)?.active == false)
        let pending = DeviceAddress(accountId: alice.accountId, deviceId: 2)
        #expect(try await store.linkStatus(pending).state == .claimed)
        await #expect(throws: RelayError.unauthorized) {
            _ = try await store.storePreKeys(pending, identityKey: nil, signed: nil, oneTime: [])
        }
        let blob = Fixtures.bytes(16)
        try await store.approveLink(accountId: alice.accountId, code: "c1", provisioningBlob: blob, awaitIdentityUpload: false, now: 1_300)
        let status = try await store.linkStatus(pending)
        #expect(status.state == .approved)
        #expect(status.provisioningBlob == blob)
        #expect(try await store.devices(account: alice.account).map(\.deviceId) == [1, 2])
        await #expect(throws: RelayError.linkCodeUnavailable) {
            try await store.approveLink(accountId: alice.accountId, code: "c1", provisioningBlob: blob, awaitIdentityUpload: false, now: 1_300)
        }

        // Expired codes go with the pending devices they created; the device limit counts pending devices.
        try await store.createLinkCode(alice.address, code: "c2", now: 3_000, expiresAt: 4_000)
        _ = try await store.claimLinkCode(code: "c2", device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 3_100, maxDevices: 6)
        await #expect(throws: RelayError.linkCodeUnavailable) {
            try await store.approveLink(accountId: alice.accountId, code: "c2", provisioningBlob: blob, awaitIdentityUpload: false, now: 4_001)
        }
        try await store.createLinkCode(alice.address, code: "c3", now: 3_000, expiresAt: 9_000)
        await #expect(throws: RelayError.tooManyDevices) {
            _ = try await store.claimLinkCode(code: "c3", device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 3_100, maxDevices: 3)
        }
        _ = try await store.deleteExpired(now: 5_000)
        #expect(try await store.deviceAuth(account: alice.account, deviceId: 3) == nil)
        await #expect(throws: RelayError.notFound("unknown link code")) {
            _ = try await store.linkInfo(accountId: alice.accountId, code: "c2", now: 5_000)
        }
        #expect(try await store.linkInfo(accountId: alice.accountId, code: "c3", now: 5_000).state == .open)
    }

    // MARK: queues

    @Test(arguments: TestBackend.available)
    func directSendsQueueInOrderAndAcksRemove(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice", devices: 2)
        let bob = try await Self.account(store, "bob", devices: 2)
        var contents: [Data] = []
        var submissions: [MessageSubmission] = []
        for _ in 0..<5 {
            let content = Fixtures.bytes(50)
            contents.append(content)
            submissions.append(try await Self.direct(store, from: alice[0], to: bob[0].account, content: content))
        }
        let results = try await store.commit(submissions, limits: Self.limits)
        let receipts = try results.map { try $0.get() }
        #expect(receipts.allSatisfy { $0.ids.count == 3 && $0.recipients.count == 3 && $0.deliveries.count == 3 })
        // Each device's sequence numbers grow with commit order.
        for device in bob + [alice[1]] {
            let seqs = receipts.flatMap(\.deliveries).filter { $0.address == device.address }.map(\.queued.seq)
            #expect(seqs.count == 5)
            #expect(seqs == seqs.sorted())
            #expect(Set(seqs).count == 5)
            let queued = try await store.pending(device.address, afterSeq: 0, limit: 100)
            #expect(queued.map(\.seq) == seqs)
            #expect(queued.map(\.envelope.content) == contents)
            #expect(queued.allSatisfy { $0.envelope.senderAccount == alice[0].account && $0.envelope.senderDevice == 1 })
            #expect(queued.allSatisfy { $0.envelope.kind == .direct && $0.envelope.clientTimestamp == 7 })
            #expect(try await store.pending(device.address, afterSeq: seqs[2], limit: 100).map(\.seq) == Array(seqs[3...]))
            #expect(try await store.pending(device.address, afterSeq: 0, limit: 2).map(\.seq) == Array(seqs[..<2]))
        }
        #expect(try await store.pending(alice[0].address, afterSeq: 0, limit: 100).isEmpty)
        #expect(try await store.totalQueued() == 15)

        let bobQueue = try await store.pending(bob[0].address, afterSeq: 0, limit: 100)
        let ackIds = bobQueue.prefix(3).map(\.envelope.id) + [UUID()]
        #expect(try await store.ack([(bob[0].address, ackIds), (bob[1].address, [])]) == [3, 0])
        #expect(try await store.ack([(bob[0].address, ackIds)]) == [0])
        #expect(try await store.pending(bob[0].address, afterSeq: 0, limit: 100).map(\.envelope.id) == bobQueue.suffix(2).map(\.envelope.id))
        #expect(try await store.totalQueued() == 12)

        // Removing a device removes its queue.
        try await store.removeDevice(accountId: bob[1].accountId, deviceId: bob[1].deviceId)
        #expect(try await store.totalQueued() == 7)
        #expect(try await store.pending(bob[1].address, afterSeq: 0, limit: 100).isEmpty)
    }

    @Test(arguments: TestBackend.available)
    func sendsAreValidatedOneByOne(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob", devices: 2)
        let good = try await Self.direct(store, from: alice, to: bob[0].account)
        guard case .direct(_, let messages, _) = good.payload else { throw TestFailure("not direct") }
        func with(_ messages: [OutgoingDeviceMessage], to recipient: String = bob[0].account) -> MessageSubmission {
            MessageSubmission(
                sender: alice, payload: .direct(recipient: recipient, messages: messages, own: []), clientTimestamp: nil,
                serverTimestamp: 3_000, expiresAt: 10_000_000_000_000)
        }
        var stale = messages
        stale[1].registrationId &+= 1
        let results = try await store.commit(
            [
                with(messages, to: "nobody-here"), with(Array(messages.prefix(1))), with(stale), good,
                with(messages + [messages[0]]), with([]),
            ], limits: Self.limits)
        #expect(results.count == 6)
        #expect(results[0].failure == .notFound("unknown account"))
        #expect(results[1].failure == .mismatchedDevices(account: bob[0].account, missing: [bob[1].deviceId], extra: []))
        #expect(results[2].failure == .staleDevices(account: bob[0].account, stale: [bob[1].deviceId]))
        #expect(results[3].failure == nil)
        #expect(results[4].failure == .invalidField("device \(messages[0].deviceId) addressed twice"))
        #expect(results[5].failure == .mismatchedDevices(account: bob[0].account, missing: [1, bob[1].deviceId], extra: []))
        #expect(try await store.totalQueued() == 2)
        // The refused ones stored nothing.
        let queued = try await store.pending(bob[0].address, afterSeq: 0, limit: 10)
        #expect(queued.count == 1)
        #expect(queued.first?.envelope.clientTimestamp == 7)
        // A send without a client timestamp stores none.
        _ = try await Self.commitOne(store, with(messages)).get()
        #expect(try await store.pending(bob[0].address, afterSeq: 0, limit: 10).last?.envelope.clientTimestamp == nil)

        // Sending to yourself: your other devices, no own copies.
        let carol = try await Self.account(store, "carol", devices: 2)
        let toSelf = try await Self.direct(store, from: carol[0], to: carol[0].account)
        let receipt = try await Self.commitOne(store, toSelf).get()
        #expect(receipt.recipients == [carol[1].address])
    }

    @Test(arguments: TestBackend.available)
    func fullQueuesRefuseAndAcksMakeRoom(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 3
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob")[0]
        var batch: [MessageSubmission] = []
        for _ in 0..<4 { batch.append(try await Self.direct(store, from: alice, to: bob.account)) }
        let results = try await store.commit(batch, limits: limits)
        #expect(results.map { $0.failure == nil } == [true, true, true, false])
        #expect(results[3].failure == .queueFull(account: bob.account, deviceId: 1))
        let refused = try await Self.commitOne(store, try await Self.direct(store, from: alice, to: bob.account), limits: limits)
        #expect(refused.failure == .queueFull(account: bob.account, deviceId: 1))
        let first = try await store.pending(bob.address, afterSeq: 0, limit: 1)
        #expect(try await store.ack([(bob.address, first.map(\.envelope.id))]) == [1])
        let accepted = try await Self.commitOne(store, try await Self.direct(store, from: alice, to: bob.account), limits: limits)
        #expect(accepted.failure == nil)

        // Bytes count too.
        var byBytes = RelayLimits()
        byBytes.maxQueuedBytesPerDevice = 100
        let carol = try await Self.account(store, "carol")[0]
        let big = try await Self.commitOne(
            store, try await Self.direct(store, from: alice, to: carol.account, content: Fixtures.bytes(101)), limits: byBytes)
        #expect(big.failure == .queueFull(account: carol.account, deviceId: 1))
    }

    @Test(arguments: TestBackend.available)
    func expiredEntriesAreDeleted(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob")[0]
        _ = try await store.commit(
            [
                try await Self.direct(store, from: alice, to: bob.account, expiresAt: 5_000),
                try await Self.direct(store, from: alice, to: bob.account, expiresAt: 9_000),
            ], limits: Self.limits)
        let result = try await store.deleteExpired(now: 6_000)
        #expect(result.expiredMessages == 1)
        #expect(result.affected == [bob.address])
        let left = try await store.pending(bob.address, afterSeq: 0, limit: 10)
        #expect(left.count == 1)
        #expect(try await store.totalQueued() == 1)
        #expect(try await store.deleteExpired(now: 6_000).expiredMessages == 0)
    }

    // MARK: groups

    @Test(arguments: TestBackend.available)
    func groupsFanOutAndTrackMembers(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice", devices: 2)
        let bob = try await Self.account(store, "bob")[0]
        let carol = try await Self.account(store, "carol")[0]
        let dave = try await Self.account(store, "dave")[0]
        await #expect(throws: RelayError.notFound("unknown account nobody-here")) {
            _ = try await store.createGroup(creator: alice[0], members: ["nobody-here"], now: 1, expiresAt: 10_000_000_000_000, limits: Self.limits(maxGroupMembers: 10))
        }
        await #expect(throws: RelayError.groupFull) {
            _ = try await store.createGroup(
                creator: alice[0], members: [bob.account, carol.account], now: 1, expiresAt: 10_000_000_000_000, limits: Self.limits(maxGroupMembers: 2))
        }
        let (info, affected) = try await store.createGroup(
            creator: alice[0], members: [bob.account, carol.account], now: 3_000, expiresAt: 10_000_000_000_000, limits: Self.limits(maxGroupMembers: 10))
        #expect(info.members == [alice[0].account, bob.account, carol.account].sorted())
        #expect(info.creator == alice[0].account)
        #expect(Set(affected.devices) == Set(alice.map(\.address) + [bob.address, carol.address]))
        let created = try #require(try await store.pending(bob.address, afterSeq: 0, limit: 10).first)
        #expect(created.envelope.kind == .groupEvent)
        let event = try WireCoding.decoder().decode(GroupEvent.self, from: created.envelope.content)
        #expect(event.action == .created)
        #expect(event.members == info.members)

        // A group message: one ciphertext for every member device but the sender's.
        let content = Fixtures.bytes(64)
        let send = MessageSubmission(
            sender: alice[0], payload: .group(groupId: info.groupId, type: 3, content: content, epoch: nil), clientTimestamp: nil,
            serverTimestamp: 4_000, expiresAt: 10_000_000_000_000)
        let receipt = try await Self.commitOne(store, send).get()
        #expect(receipt.ids.count == 1)
        #expect(Set(receipt.recipients) == Set([alice[1].address, bob.address, carol.address]))
        let outsider = MessageSubmission(
            sender: dave, payload: .group(groupId: info.groupId, type: 3, content: content, epoch: nil), clientTimestamp: nil,
            serverTimestamp: 4_000, expiresAt: 10_000_000_000_000)
        #expect(try await Self.commitOne(store, outsider).failure == .forbidden("not a member of this group"))
        let unknown = MessageSubmission(
            sender: dave, payload: .group(groupId: UUID(), type: 3, content: content, epoch: nil), clientTimestamp: nil,
            serverTimestamp: 4_000, expiresAt: 10_000_000_000_000)
        #expect(try await Self.commitOne(store, unknown).failure == .notFound("unknown group"))

        // The shared ciphertext stays until its last recipient acks it.
        let id = receipt.ids[0]
        #expect(try await store.ack([(bob.address, [id]), (carol.address, [id])]) == [1, 1])
        let forAlice = try await store.pending(alice[1].address, afterSeq: 0, limit: 10)
        #expect(forAlice.last?.envelope.id == id)
        #expect(forAlice.last?.envelope.content == content)
        #expect(forAlice.last?.envelope.groupId == info.groupId)
        #expect(try await store.ack([(alice[1].address, [id])]) == [1])

        // Membership changes, with events to everyone affected.
        let (added, addedQueues) = try await store.addGroupMembers(
            actor: alice[0], groupId: info.groupId, members: [dave.account, carol.account], now: 5_000, expiresAt: 10_000_000_000_000,
            limits: Self.limits(maxGroupMembers: 10))
        #expect(added.members.contains(dave.account))
        #expect(addedQueues.devices.contains(dave.address))
        await #expect(throws: RelayError.groupFull) {
            _ = try await store.addGroupMembers(
                actor: alice[0], groupId: info.groupId, members: [alice[0].account, (try await Self.account(store, "erin")[0]).account],
                now: 5_000, expiresAt: 10_000_000_000_000, limits: Self.limits(maxGroupMembers: 4))
        }
        let (removed, removedQueues) = try await store.removeGroupMembers(
            actor: alice[0], groupId: info.groupId, members: [carol.account], now: 6_000, expiresAt: 10_000_000_000_000,
            limits: Self.limits)
        #expect(!removed.members.contains(carol.account))
        #expect(removedQueues.devices.contains(carol.address))
        let carolEvents = try await store.pending(carol.address, afterSeq: 0, limit: 10).filter { $0.envelope.kind == .groupEvent }
        let carolActions = try carolEvents.map { try WireCoding.decoder().decode(GroupEvent.self, from: $0.envelope.content).action }
        #expect(carolActions == [.created, .membersAdded, .membersRemoved])
        await #expect(throws: RelayError.forbidden("not a member of this group")) {
            _ = try await store.group(info.groupId, viewer: carol.accountId)
        }
        #expect(try await store.group(info.groupId, viewer: dave.accountId).members == removed.members)
        #expect(try await store.groups(of: dave.accountId).map(\.groupId) == [info.groupId])
        #expect(try await store.groups(of: carol.accountId).isEmpty)
        #expect(try await store.groupMemberAccounts(info.groupId, requester: bob.accountId) == removed.members)
        await #expect(throws: RelayError.notFound("unknown group")) {
            _ = try await store.group(UUID(), viewer: bob.accountId)
        }
    }

    // MARK: group roles and versions

    static func event(_ entry: QueuedEnvelope) throws -> GroupEvent {
        try WireCoding.decoder().decode(GroupEvent.self, from: entry.envelope.content)
    }

    static func groupSend(_ sender: AuthenticatedDevice, _ groupId: UUID, epoch: Int64?) -> MessageSubmission {
        MessageSubmission(
            sender: sender, payload: .group(groupId: groupId, type: 3, content: Fixtures.bytes(48), epoch: epoch),
            clientTimestamp: nil, serverTimestamp: 4_000, expiresAt: 10_000_000_000_000)
    }

    /// Roles and versions (RelayStore's group contract): the creator is the only admin at version 1; a plain member
    /// may neither add, remove others nor promote (`notAdmin`, nothing changed); an admin adds and promotes, each
    /// change one version more with one event stamped with the members and admins after it; a change that changes
    /// nothing increments nothing and queues nothing; anyone may leave; the last admin leaving makes the
    /// longest-standing member an admin (`promoted`); a send naming an old version is refused with nothing stored.
    @Test(arguments: TestBackend.available)
    func groupRolesAndVersions(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let far: Int64 = 10_000_000_000_000
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob")[0]
        let carol = try await Self.account(store, "carol")[0]
        let dave = try await Self.account(store, "dave")[0]
        let (created, _) = try await store.createGroup(
            creator: alice, members: [bob.account, carol.account], now: 3_000, expiresAt: far, limits: Self.limits)
        let group = created.groupId
        #expect(created.epoch == 1)
        #expect(created.admins == [alice.account])
        #expect(try Self.event(try #require(try await store.pending(bob.address, afterSeq: 0, limit: 10).last)).epoch == 1)

        // A plain member: refused, nothing changed.
        await #expect(throws: RelayError.notAdmin("only a group admin may add members")) {
            _ = try await store.addGroupMembers(actor: bob, groupId: group, members: [dave.account], now: 4_000, expiresAt: far, limits: Self.limits)
        }
        await #expect(throws: RelayError.notAdmin("only a group admin may remove other members")) {
            _ = try await store.removeGroupMembers(actor: bob, groupId: group, members: [carol.account], now: 4_000, expiresAt: far, limits: Self.limits)
        }
        await #expect(throws: RelayError.notAdmin("only a group admin may make admins")) {
            _ = try await store.addGroupAdmins(actor: bob, groupId: group, members: [bob.account], now: 4_000, expiresAt: far, limits: Self.limits)
        }
        await #expect(throws: RelayError.forbidden("not a member of this group")) {
            _ = try await store.addGroupAdmins(actor: dave, groupId: group, members: [dave.account], now: 4_000, expiresAt: far, limits: Self.limits)
        }
        var info = try await store.group(group, viewer: alice.accountId)
        #expect(info.epoch == 1)
        #expect(info.members == [alice.account, bob.account, carol.account].sorted())
        #expect(try await store.pending(bob.address, afterSeq: 0, limit: 10).count == 1)
        #expect(try await store.pending(dave.address, afterSeq: 0, limit: 10).isEmpty)

        // The admin adds dave (version 2) and makes bob an admin (version 3); each event stamped after the change.
        let (afterAdd, addQueues) = try await store.addGroupMembers(
            actor: alice, groupId: group, members: [dave.account], now: 5_000, expiresAt: far, limits: Self.limits)
        #expect(afterAdd.epoch == 2)
        #expect(addQueues.devices.contains(dave.address))
        let addEvent = try Self.event(try #require(try await store.pending(dave.address, afterSeq: 0, limit: 10).last))
        #expect(addEvent.action == .membersAdded)
        #expect(addEvent.members == [dave.account])
        #expect(addEvent.epoch == 2)
        #expect(addEvent.currentMembers == afterAdd.members)
        #expect(addEvent.admins == [alice.account])
        let erin = try await Self.account(store, "erin")[0]
        await #expect(throws: RelayError.invalidField("\(erin.account) is not a member of this group")) {
            _ = try await store.addGroupAdmins(
                actor: alice, groupId: group, members: [erin.account, carol.account], now: 5_500, expiresAt: far, limits: Self.limits)
        }
        #expect(try await store.group(group, viewer: alice.accountId).admins == [alice.account])
        let (afterPromote, _) = try await store.addGroupAdmins(
            actor: alice, groupId: group, members: [bob.account], now: 6_000, expiresAt: far, limits: Self.limits)
        #expect(afterPromote.epoch == 3)
        #expect(afterPromote.admins == [alice.account, bob.account].sorted())
        let promoteEvent = try Self.event(try #require(try await store.pending(carol.address, afterSeq: 0, limit: 10).last))
        #expect(promoteEvent.action == .adminsAdded)
        #expect(promoteEvent.members == [bob.account])
        #expect(promoteEvent.epoch == 3)
        #expect(promoteEvent.admins == afterPromote.admins)

        // Changes that change nothing: no version, no event.
        let carolQueued = try await store.pending(carol.address, afterSeq: 0, limit: 10).count
        let (sameAdd, sameAddQueues) = try await store.addGroupMembers(
            actor: bob, groupId: group, members: [dave.account], now: 6_500, expiresAt: far, limits: Self.limits)
        let (samePromote, samePromoteQueues) = try await store.addGroupAdmins(
            actor: bob, groupId: group, members: [alice.account], now: 6_500, expiresAt: far, limits: Self.limits)
        let outsider = try await Self.account(store, "frank")[0]
        let (sameRemove, sameRemoveQueues) = try await store.removeGroupMembers(
            actor: bob, groupId: group, members: [outsider.account], now: 6_500, expiresAt: far, limits: Self.limits)
        #expect([sameAdd.epoch, samePromote.epoch, sameRemove.epoch] == [3, 3, 3])
        #expect(sameAddQueues.devices.isEmpty && samePromoteQueues.devices.isEmpty && sameRemoveQueues.devices.isEmpty)
        #expect(try await store.pending(carol.address, afterSeq: 0, limit: 10).count == carolQueued)

        // A send naming an old version: refused, nothing stored; the current version (or none) is accepted.
        #expect(try await Self.commitOne(store, Self.groupSend(carol, group, epoch: 2)).failure == .groupChanged(current: 3))
        #expect(try await store.pending(dave.address, afterSeq: 0, limit: 10).count == 2)
        #expect(try await store.pending(alice.address, afterSeq: 0, limit: 10).count == 3)
        let receipt = try await Self.commitOne(store, Self.groupSend(carol, group, epoch: 3)).get()
        #expect(Set(receipt.recipients) == [alice.address, bob.address, dave.address])
        _ = try await Self.commitOne(store, Self.groupSend(carol, group, epoch: nil)).get()

        // Anyone may leave (a plain member too); the admins leave: the longest-standing member becomes an admin.
        let (afterLeave, leaveQueues) = try await store.removeGroupMembers(
            actor: dave, groupId: group, members: [dave.account], now: 7_000, expiresAt: far, limits: Self.limits)
        #expect(afterLeave.epoch == 4)
        #expect(leaveQueues.devices.contains(dave.address))
        let (afterAlice, _) = try await store.removeGroupMembers(
            actor: alice, groupId: group, members: [alice.account], now: 7_100, expiresAt: far, limits: Self.limits)
        #expect(afterAlice.epoch == 5)
        #expect(afterAlice.admins == [bob.account])
        let (afterBob, _) = try await store.removeGroupMembers(
            actor: bob, groupId: group, members: [bob.account], now: 7_200, expiresAt: far, limits: Self.limits)
        #expect(afterBob.epoch == 6)
        #expect(afterBob.members == [carol.account])
        #expect(afterBob.admins == [carol.account])
        let heirEvent = try Self.event(try #require(try await store.pending(bob.address, afterSeq: 0, limit: 20).last))
        #expect(heirEvent.action == .membersRemoved)
        #expect(heirEvent.members == [bob.account])
        #expect(heirEvent.promoted == [carol.account])
        #expect(heirEvent.epoch == 6)
        #expect(heirEvent.admins == [carol.account])
        info = try await store.group(group, viewer: carol.accountId)
        #expect(info.admins == [carol.account])
        #expect(info.epoch == 6)
    }

    /// The heir of a group whose last admin leaves is the member added first, not the first by name.
    @Test(arguments: TestBackend.available)
    func heirIsTheLongestStandingMember(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let far: Int64 = 10_000_000_000_000
        let alice = try await Self.account(store, "alice")[0]
        let zed = try await Self.account(store, "zed")[0]
        let bob = try await Self.account(store, "bob")[0]
        let (created, _) = try await store.createGroup(
            creator: alice, members: [zed.account], now: 3_000, expiresAt: far, limits: Self.limits)
        _ = try await store.addGroupMembers(
            actor: alice, groupId: created.groupId, members: [bob.account], now: 4_000, expiresAt: far, limits: Self.limits)
        let (after, _) = try await store.removeGroupMembers(
            actor: alice, groupId: created.groupId, members: [alice.account], now: 5_000, expiresAt: far, limits: Self.limits)
        #expect(after.admins == [zed.account])
        let (removedCreator, _) = try await store.removeGroupMembers(
            actor: zed, groupId: created.groupId, members: [bob.account], now: 6_000, expiresAt: far, limits: Self.limits)
        #expect(removedCreator.members == [zed.account])
        #expect(removedCreator.epoch == 4)
    }

    // MARK: queue shares, removed senders, contacts, link code storage

    /// Each sender may fill only its share of a device queue (`maxQueuedMessagesPerSender`, bytes): past it that
    /// sender is refused (`queueShareFull`) while others still reach the device; acks and expiry give the share back;
    /// copies to the sender's own devices take no share.
    @Test(arguments: TestBackend.available)
    func queueSharesBoundEachSender(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 10
        limits.maxQueuedMessagesPerSender = 3
        let alice = try await Self.account(store, "alice", devices: 2)
        let bob = try await Self.account(store, "bob")[0]
        let carol = try await Self.account(store, "carol")[0]
        var batch: [MessageSubmission] = []
        for index in 0..<4 {
            batch.append(try await Self.direct(store, from: alice[0], to: bob.account, expiresAt: index == 0 ? 5_000 : 10_000_000_000_000))
        }
        let results = try await store.commit(batch, limits: limits)
        #expect(results.map { $0.failure == nil } == [true, true, true, false])
        #expect(results[3].failure == .queueShareFull(account: bob.account, deviceId: 1))
        // Alice's own copies (to her device 2) took no share: 3 in her second device's queue from herself, fine.
        #expect(try await store.pending(alice[1].address, afterSeq: 0, limit: 10).count == 3)
        // In a later transaction too; carol still reaches bob.
        let again = try await Self.commitOne(store, try await Self.direct(store, from: alice[0], to: bob.account), limits: limits)
        #expect(again.failure == .queueShareFull(account: bob.account, deviceId: 1))
        #expect(try await Self.commitOne(store, try await Self.direct(store, from: carol, to: bob.account), limits: limits).failure == nil)
        #expect(try await store.pending(bob.address, afterSeq: 0, limit: 10).count == 4)

        // An ack gives the share back.
        let fromAlice = try await store.pending(bob.address, afterSeq: 0, limit: 10).filter { $0.envelope.senderAccount == alice[0].account }
        #expect(try await store.ack([(bob.address, [fromAlice[1].envelope.id])]) == [1])
        #expect(try await Self.commitOne(store, try await Self.direct(store, from: alice[0], to: bob.account), limits: limits).failure == nil)
        #expect(try await Self.commitOne(store, try await Self.direct(store, from: alice[0], to: bob.account), limits: limits).failure
            == .queueShareFull(account: bob.account, deviceId: 1))
        // So does expiry.
        #expect(try await store.deleteExpired(now: 6_000).expiredMessages >= 1)
        #expect(try await Self.commitOne(store, try await Self.direct(store, from: alice[0], to: bob.account), limits: limits).failure == nil)

        // Bytes: the sender's share in bytes.
        var byBytes = RelayLimits()
        byBytes.maxQueuedBytesPerSender = 100
        let dave = try await Self.account(store, "dave")[0]
        #expect(try await Self.commitOne(
            store, try await Self.direct(store, from: carol, to: dave.account, content: Fixtures.bytes(60)), limits: byBytes).failure == nil)
        #expect(try await Self.commitOne(
            store, try await Self.direct(store, from: carol, to: dave.account, content: Fixtures.bytes(60)), limits: byBytes).failure
            == .queueShareFull(account: dave.account, deviceId: 1))
        #expect(try await Self.commitOne(
            store, try await Self.direct(store, from: bob, to: dave.account, content: Fixtures.bytes(60)), limits: byBytes).failure == nil)
    }

    /// Group membership events take queue room from the actor's share: a member device without room refuses the
    /// change, and nothing of it is stored.
    @Test(arguments: TestBackend.available)
    func groupEventsCountAgainstTheActorsShare(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 10
        limits.maxQueuedMessagesPerSender = 2
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob")[0]
        let carol = try await Self.account(store, "carol")[0]
        _ = try await Self.commitOne(store, try await Self.direct(store, from: alice, to: bob.account), limits: limits).get()
        let (group, _) = try await store.createGroup(
            creator: alice, members: [bob.account], now: 2_000, expiresAt: 10_000_000_000_000, limits: limits)
        // Bob's queue holds 2 entries from alice (her share): the next event from her does not fit.
        await #expect(throws: RelayError.queueShareFull(account: bob.account, deviceId: 1)) {
            _ = try await store.addGroupMembers(
                actor: alice, groupId: group.groupId, members: [carol.account], now: 3_000, expiresAt: 10_000_000_000_000,
                limits: limits)
        }
        #expect(try await store.group(group.groupId, viewer: alice.accountId).members == [alice.account, bob.account].sorted())
        #expect(try await store.pending(bob.address, afterSeq: 0, limit: 10).count == 2)
        #expect(try await store.pending(carol.address, afterSeq: 0, limit: 10).isEmpty)
        // The device cap counts events as well.
        var tight = limits
        tight.maxQueuedMessagesPerSender = 100
        tight.maxQueuedMessagesPerDevice = 2
        await #expect(throws: RelayError.queueFull(account: bob.account, deviceId: 1)) {
            _ = try await store.removeGroupMembers(
                actor: alice, groupId: group.groupId, members: [bob.account], now: 3_000, expiresAt: 10_000_000_000_000,
                limits: tight)
        }
        #expect(try await store.group(group.groupId, viewer: bob.accountId).members.contains(bob.account))
        // Bob acks; alice's change goes through.
        let queued = try await store.pending(bob.address, afterSeq: 0, limit: 10)
        _ = try await store.ack([(bob.address, queued.map(\.envelope.id))])
        _ = try await store.addGroupMembers(
            actor: alice, groupId: group.groupId, members: [carol.account], now: 4_000, expiresAt: 10_000_000_000_000, limits: limits)
        #expect(try await store.pending(carol.address, afterSeq: 0, limit: 10).count == 1)
    }

    /// A send is stored only if its device still exists when the send's transaction runs.
    @Test(arguments: TestBackend.available)
    func aRemovedDeviceCannotSend(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice", devices: 2)
        let bob = try await Self.account(store, "bob")[0]
        let submission = try await Self.direct(store, from: alice[1], to: bob.account)
        try await store.removeDevice(accountId: alice[1].accountId, deviceId: alice[1].deviceId)
        let results = try await store.commit([submission, try await Self.direct(store, from: alice[0], to: bob.account)], limits: Self.limits)
        #expect(results[0].failure == .unauthorized)
        #expect(results[1].failure == nil)
        #expect(try await store.pending(bob.address, afterSeq: 0, limit: 10).map(\.envelope.senderDevice) == [alice[0].deviceId])
        #expect(try await store.totalQueued() == 1)
    }

    /// Contacts: a 1:1 message routed each way, or a shared group; an account is its own contact. One direction
    /// is not enough, and a group message does not make a contact by itself.
    @Test(arguments: TestBackend.available)
    func contactsNeedMessagesBothWaysOrAGroup(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        let bob = try await Self.account(store, "bob")[0]
        let carol = try await Self.account(store, "carol")[0]
        let dave = try await Self.account(store, "dave")[0]
        #expect(try await store.areContacts(alice.accountId, alice.account))
        #expect(try await !store.areContacts(alice.accountId, bob.account))
        _ = try await Self.commitOne(store, try await Self.direct(store, from: alice, to: bob.account)).get()
        #expect(try await !store.areContacts(alice.accountId, bob.account))
        #expect(try await !store.areContacts(bob.accountId, alice.account))
        // A refused send makes no contact.
        var full = RelayLimits()
        full.maxQueuedMessagesPerDevice = 0
        _ = try await Self.commitOne(store, try await Self.direct(store, from: bob, to: alice.account)).get()
        #expect(try await store.areContacts(alice.accountId, bob.account))
        #expect(try await store.areContacts(bob.accountId, alice.account))
        _ = try await Self.commitOne(store, try await Self.direct(store, from: carol, to: dave.account)).get()
        #expect(try await Self.commitOne(store, try await Self.direct(store, from: dave, to: carol.account), limits: full).failure
            == .queueFull(account: carol.account, deviceId: 1))
        #expect(try await !store.areContacts(carol.accountId, dave.account))
        // A shared group.
        _ = try await store.createGroup(creator: carol, members: [alice.account], now: 3_000, expiresAt: 10_000_000_000_000, limits: Self.limits)
        #expect(try await store.areContacts(alice.accountId, carol.account))
        #expect(try await !store.areContacts(alice.accountId, "nobody-here"))
        let among = try await store.contacts(
            of: alice.accountId, among: [alice.account, bob.account, carol.account, dave.account, "nobody-here", bob.account])
        #expect(among == [alice.account, bob.account, carol.account])
    }

    /// Link codes are stored as their SHA-256 hashes, never in clear, and found by the hash.
    @Test(arguments: TestBackend.available)
    func linkCodesAreStoredHashed(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        let code = "code-\(UUID().uuidString)"
        try await store.createLinkCode(alice.address, code: code, now: 1_000, expiresAt: 10_000_000_000_000)
        let stored = try await Self.storedLinkCodeColumns(store)
        #expect(stored.hashes == [Credentials.hash(code)])
        #expect(!stored.columns.contains("code"))
        #expect(try await store.linkInfo(accountId: alice.accountId, code: code, now: 2_000).state == .open)
        await #expect(throws: RelayError.notFound("unknown link code")) {
            _ = try await store.linkInfo(accountId: alice.accountId, code: code + "x", now: 2_000)
        }
        let (_, deviceId) = try await store.claimLinkCode(
            code: code, device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 2_000, maxDevices: 6)
        #expect(deviceId == 2)
    }

    /// The `link_code` table's column names and stored code hashes, read from the backend directly.
    static func storedLinkCodeColumns(_ store: any RelayStore) async throws -> (columns: Set<String>, hashes: [Data]) {
        if let sqlite = store as? SQLiteRelayStore {
            return try await sqlite.pool.read { db in
                let columns = try Set(db.columns(in: "link_code").map(\.name))
                let hashes = try Data.fetchAll(db, sql: "SELECT code_hash FROM link_code")
                return (columns, hashes)
            }
        }
        let postgres = try #require(store as? PostgresRelayStore)
        return try await postgres.read { connection in
            var columns = Set<String>()
            for try await name in try await connection.query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'link_code' AND table_schema = current_schema()",
                logger: postgres.logger
            ).decode(String.self) {
                columns.insert(name)
            }
            var hashes: [Data] = []
            for try await hash in try await connection.query("SELECT code_hash FROM link_code", logger: postgres.logger).decode(Data.self) {
                hashes.append(hash)
            }
            return (columns, hashes)
        }
    }

    // MARK: push and settings

    @Test(arguments: TestBackend.available)
    func pushEndpointsAndSettings(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let alice = try await Self.account(store, "alice")[0]
        #expect(try await store.pushEndpoint(alice.address) == nil)
        try await store.setPushEndpoint(alice.address, endpoint: "https://push.example/1", now: 1)
        try await store.setPushEndpoint(alice.address, endpoint: "https://push.example/2", now: 2)
        #expect(try await store.pushEndpoint(alice.address) == "https://push.example/2")
        try await store.removePushEndpoint(alice.address, ifEndpoint: "https://push.example/1")
        #expect(try await store.pushEndpoint(alice.address) == "https://push.example/2")
        try await store.removePushEndpoint(alice.address, ifEndpoint: nil)
        #expect(try await store.pushEndpoint(alice.address) == nil)

        let first = try await store.setting("test_key") { Data([1, 2, 3]) }
        let second = try await store.setting("test_key") { Data([9]) }
        #expect(first == Data([1, 2, 3]))
        #expect(second == first)
    }
}

/// A thread-safe running total (for `@Sendable` callbacks).
final class Counter: Sendable {
    private let total = NIOLockedValueBox(0)
    func add(_ n: Int) { total.withLockedValue { $0 += n } }
    var value: Int { total.withLockedValue { $0 } }
}

/// A thread-safe list of values (for `@Sendable` callbacks).
final class Recorder<Value: Sendable>: Sendable {
    private let list = NIOLockedValueBox<[Value]>([])
    func append(_ value: Value) { list.withLockedValue { $0.append(value) } }
    var values: [Value] { list.withLockedValue { $0 } }
}

extension Result where Failure == RelayError {
    /// The error, or nil on success.
    var failure: RelayError? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
