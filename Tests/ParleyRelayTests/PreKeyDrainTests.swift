import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 9, item 10 (and issue 12's large groups): one-time prekey draining is bounded per requesting device
/// (one token per device bundle, `*` and batches included), per target device (hand-outs per hour; beyond,
/// bundles come without one) and in storage (200 per device); a batched fetch sets up a 500-member group at
/// the default limits.
@Suite("Prekey draining and batched bundles", .timeLimit(.minutes(4)))
struct PreKeyDrainTests {
    /// A `*` fetch of a 6-device account costs 6 tokens: at the default burst (3,000) a requester gets at most
    /// 500 such fetches (plus what refills meanwhile), not 3,000.
    @Test func starFetchPaysPerDevice() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let target = try await http.register(Fixtures.uniqueName("target"))
        for _ in 1..<relay.limits.maxDevicesPerAccount { _ = try await http.link(from: target) }
        #expect(try await http.devices(of: target.account, target).count == 6)
        let requester = try await http.register(Fixtures.uniqueName("requester"))

        let started = ContinuousClock.now
        var fetched = 0
        var limited: HTTPTestClient.Reply?
        while fetched <= relay.limits.bundleFetchBurst {
            let reply = try await http.call(.GET, "/v1/keys/\(target.account)/*", requester)
            if reply.status == 429 {
                limited = reply
                break
            }
            #expect(reply.status == 200)
            fetched += 1
        }
        let elapsed = Double((ContinuousClock.now - started).components.seconds + 1)
        let refilled = Int(elapsed * relay.limits.bundleFetchPerSecond / 6) + 1
        #expect(fetched >= relay.limits.bundleFetchBurst / 6)
        #expect(fetched <= relay.limits.bundleFetchBurst / 6 + refilled)
        #expect(limited?.error?.code == .rateLimited)
        try await relay.stop()
    }

    /// However many requesters ask, one device hands out at most its hand-out burst (100) of one-time prekeys;
    /// later bundles come without one, and the remaining keys stay stored.
    @Test func targetDeviceHandsOutABoundedNumber() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let target = try await http.register(Fixtures.uniqueName("target"), keys: Fixtures.keys(oneTimeCount: 100))
        let more = UploadPreKeysRequest(oneTimePreKeys: Fixtures.oneTimePreKeys(50, firstKeyId: 1_000))
        #expect(try await http.call(.PUT, "/v1/keys", target, body: more).status == 200)
        var requesters: [DeviceCredentials] = []
        for index in 0..<3 { requesters.append(try await http.register(Fixtures.uniqueName("r\(index)"))) }

        var handedOut = 0
        var without = 0
        for _ in 0..<60 {
            for requester in requesters {
                let reply = try await http.call(.GET, "/v1/keys/\(target.account)/1", requester)
                let bundle = try reply.decode(PreKeyBundleResponse.self)
                if bundle.devices.first?.oneTimePreKey != nil { handedOut += 1 } else { without += 1 }
            }
        }
        // 100 in the burst, and what refilled at 100 an hour while the test ran (a few at most).
        #expect(handedOut >= relay.limits.oneTimePreKeyHandoutBurst)
        #expect(handedOut <= relay.limits.oneTimePreKeyHandoutBurst + 5)
        #expect(without == 180 - handedOut)
        let status = try await http.call(.GET, "/v1/keys/status", target).decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 150 - handedOut)
        try await relay.stop()
    }

    /// A device stores at most 200 one-time prekeys: an upload beyond is refused whole.
    @Test func storedOneTimePreKeysAreCapped() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Fixtures.keys(oneTimeCount: 100))
        let second = UploadPreKeysRequest(oneTimePreKeys: Fixtures.oneTimePreKeys(100, firstKeyId: 101))
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: second).decode(PreKeyStatusResponse.self).oneTimePreKeyCount == 200)
        let third = UploadPreKeysRequest(oneTimePreKeys: Fixtures.oneTimePreKeys(5, firstKeyId: 201))
        let refused = try await http.call(.PUT, "/v1/keys", alice, body: third)
        #expect(refused.status == 400)
        #expect(refused.error?.code == .tooManyItems)
        #expect(try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self).oneTimePreKeyCount == 200)
        // Replacing existing ids does not add.
        let replace = UploadPreKeysRequest(oneTimePreKeys: Fixtures.oneTimePreKeys(100, firstKeyId: 1))
        #expect(try await http.call(.PUT, "/v1/keys", alice, body: replace).status == 200)
        try await relay.stop()
    }

    /// The batched fetch: many accounts (all devices, or chosen ones) in one request, unknown accounts listed,
    /// one token per device bundle.
    @Test func batchedFetch() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let requester = try await http.register(Fixtures.uniqueName("requester"))
        var accounts: [DeviceCredentials] = []
        for index in 0..<8 { accounts.append(try await http.register(Fixtures.uniqueName("m\(index)"))) }
        let linked = try await http.link(from: accounts[0])
        let unknown = Fixtures.uniqueName("nobody")
        let request = PreKeyBundleBatchRequest(
            accounts: accounts.map { BundleRequestTarget(account: $0.account) } + [
                BundleRequestTarget(account: unknown)
            ])
        let reply = try await http.call(.POST, "/v1/keys/bundles", requester, body: request)
        #expect(reply.status == 200)
        let batch = try reply.decode(PreKeyBundleBatchResponse.self)
        #expect(batch.accounts.map(\.account) == accounts.map(\.account))
        #expect(batch.unknownAccounts == [unknown])
        #expect(batch.accounts[0].devices.map(\.deviceId) == [1, linked.deviceId])
        #expect(batch.accounts.dropFirst().allSatisfy { $0.devices.count == 1 && $0.devices[0].oneTimePreKey != nil })

        // Chosen devices only.
        let chosen = try await http.call(
            .POST, "/v1/keys/bundles", requester,
            body: PreKeyBundleBatchRequest(accounts: [BundleRequestTarget(account: accounts[0].account, deviceIds: [linked.deviceId])]))
        #expect(try chosen.decode(PreKeyBundleBatchResponse.self).accounts.first?.devices.map(\.deviceId) == [linked.deviceId])

        // Malformed batches.
        let empty = try await http.call(.POST, "/v1/keys/bundles", requester, body: PreKeyBundleBatchRequest(accounts: []))
        #expect(empty.error?.code == .invalidField)
        let twice = PreKeyBundleBatchRequest(accounts: [BundleRequestTarget(account: accounts[1].account), BundleRequestTarget(account: accounts[1].account)])
        #expect(try await http.call(.POST, "/v1/keys/bundles", requester, body: twice).error?.code == .invalidField)
        let tooMany = PreKeyBundleBatchRequest(accounts: (0...relay.limits.maxGroupMembers).map { BundleRequestTarget(account: "a\($0)x") })
        #expect(try await http.call(.POST, "/v1/keys/bundles", requester, body: tooMany).error?.code == .tooManyItems)
        #expect(try await http.call(.POST, "/v1/keys/bundles", body: request).status == 401)
        try await relay.stop()
    }

    /// A requester's budget is in device bundles: a batch that needs more tokens than are left gets 429 with
    /// the seconds to wait, and takes nothing. (The budget under test is set small here.)
    @Test func batchPaysPerDeviceBundle() async throws {
        var limits = RelayLimits()
        limits.bundleFetchBurst = 5
        limits.bundleFetchPerSecond = 0.01
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let requester = try await http.register(Fixtures.uniqueName("requester"))
        var accounts: [DeviceCredentials] = []
        for index in 0..<6 { accounts.append(try await http.register(Fixtures.uniqueName("m\(index)"))) }
        let four = PreKeyBundleBatchRequest(accounts: accounts.prefix(4).map { BundleRequestTarget(account: $0.account) })
        #expect(try await http.call(.POST, "/v1/keys/bundles", requester, body: four).status == 200)
        let limited = try await http.call(.POST, "/v1/keys/bundles", requester, body: four)
        #expect(limited.status == 429)
        #expect(limited.error?.code == .rateLimited)
        // More than the whole budget can never pass: refused as too large, not as "wait".
        let six = PreKeyBundleBatchRequest(accounts: accounts.map { BundleRequestTarget(account: $0.account) })
        #expect(try await http.call(.POST, "/v1/keys/bundles", requester, body: six).error?.code == .tooManyItems)
        // The refused fetches took no one-time prekey.
        let status = try await http.call(.GET, "/v1/keys/status", accounts[5]).decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 5)
        try await relay.stop()
    }

    /// Issue 12's case at the default limits: every member of a 500-member group fetches the bundles of the 499
    /// others in one request, each with a one-time prekey while the targets' hand-out budgets last.
    @Test func fiveHundredMemberSetupFitsTheDefaultBudgets() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let store = relay.running.core.store
        let requesters = [try await http.register(Fixtures.uniqueName("first")), try await http.register(Fixtures.uniqueName("second"))]
        // The other members are created in the store directly: registrations over HTTP are limited per address.
        var names: [String] = []
        var keys = Fixtures.keys(oneTimeCount: 3)  // one key set for all: the relay treats each device's copy alone
        for index in 0..<498 {
            let name = "g\(index)-\(UUID().uuidString.prefix(6).lowercased())"
            keys.registrationId = UInt32(index + 1)
            _ = try await store.createAccount(name: name, device: keys, credentialHash: Credentials.hash("x"), now: RelayClock.nowMillis())
            names.append(name)
        }
        for requester in requesters {
            let others = names + requesters.filter { $0.account != requester.account }.map(\.account)
            #expect(others.count == 499)
            let reply = try await http.call(
                .POST, "/v1/keys/bundles", requester, body: PreKeyBundleBatchRequest(accounts: others.map { BundleRequestTarget(account: $0) }))
            #expect(reply.status == 200)
            let batch = try reply.decode(PreKeyBundleBatchResponse.self)
            #expect(batch.accounts.count == 499)
            #expect(batch.accounts.allSatisfy { $0.devices.count == 1 && $0.devices[0].oneTimePreKey != nil })
        }
        try await relay.stop()
    }
}
