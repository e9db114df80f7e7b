import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Prekeys", .timeLimit(.minutes(3)))
struct PreKeyTests {
    @Test func uploadFetchAndRefillSignal() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let identity = Fixtures.identity()
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Fixtures.keys(oneTimeCount: 0, identity: identity))
        let bob = try await http.register(Fixtures.uniqueName("bob"))

        var status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 0)
        #expect(status.refillNeeded)

        // No one-time prekey left: the bundle comes without one.
        var bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.count == 1)
        #expect(bundle.devices[0].oneTimePreKey == nil)

        let keys = Fixtures.oneTimePreKeys(100)
        let signed = Fixtures.signedPreKey(id: 9, identity: identity)
        // EC prekeys alone still leave the notice on: a device without Kyber prekeys is told to publish them.
        var upload = try await http.call(
            .PUT, "/v1/keys", alice, body: UploadPreKeysRequest(signedPreKey: signed, oneTimePreKeys: keys))
        #expect(upload.status == 200)
        status = try upload.decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 100)
        #expect(status.refillNeeded)
        upload = try await http.call(
            .PUT, "/v1/keys", alice,
            body: UploadPreKeysRequest(
                kyberLastResortPreKey: try KyberPreKeyTests.kyberPreKey(id: 500, signer: identity),
                kyberOneTimePreKeys: try (501...510).map { try KyberPreKeyTests.kyberPreKey(id: UInt32($0), signer: identity) }))
        status = try upload.decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 100)
        #expect(!status.refillNeeded)

        let tooMany = Fixtures.oneTimePreKeys(101, firstKeyId: 1001)
        let refused = try await http.call(.PUT, "/v1/keys", alice, body: UploadPreKeysRequest(oneTimePreKeys: tooMany))
        #expect(refused.status == 400)
        #expect(refused.error?.code == .tooManyItems)

        bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/*", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.signedPreKey == signed)
        #expect(bundle.devices.first?.oneTimePreKey == keys[0])
        status = try await http.call(.GET, "/v1/keys/status", alice).decode(PreKeyStatusResponse.self)
        #expect(status.oneTimePreKeyCount == 99)

        let missing = try await http.call(.GET, "/v1/keys/nobody-xyz/*", bob)
        #expect(missing.status == 404)
        #expect(missing.error?.code == .notFound)
        try await relay.stop()
    }

    @Test func concurrentFetchesHandOutEachOneTimePreKeyOnce() async throws {
        var limits = RelayLimits()
        limits.bundleFetchBurst = 1_000
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"), keys: Fixtures.keys(oneTimeCount: 20))
        var fetchers: [DeviceCredentials] = []
        for index in 0..<5 { fetchers.append(try await http.register(Fixtures.uniqueName("f\(index)"))) }

        let results = try await withThrowingTaskGroup(of: UInt32?.self) { group in
            for index in 0..<40 {
                let fetcher = fetchers[index % fetchers.count]
                group.addTask {
                    let bundle = try await http.call(.GET, "/v1/keys/\(alice.account)/1", fetcher)
                        .decode(PreKeyBundleResponse.self)
                    return bundle.devices.first?.oneTimePreKey?.keyId
                }
            }
            var collected: [UInt32?] = []
            for try await result in group { collected.append(result) }
            return collected
        }
        let handedOut = results.compactMap { $0 }
        #expect(handedOut.count == 20)
        #expect(Set(handedOut).count == 20)
        #expect(results.filter { $0 == nil }.count == 20)
        try await relay.stop()
    }

    @Test func bundleFetchesAreRateLimited() async throws {
        var limits = RelayLimits()
        limits.bundleFetchBurst = 3
        limits.bundleFetchPerSecond = 0.01
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        for _ in 0..<3 {
            #expect(try await http.call(.GET, "/v1/keys/\(alice.account)/*", bob).status == 200)
        }
        let limited = try await http.call(.GET, "/v1/keys/\(alice.account)/*", bob)
        #expect(limited.status == 429)
        #expect(limited.error?.code == .rateLimited)
        // Per requester: alice still has her own budget.
        #expect(try await http.call(.GET, "/v1/keys/\(bob.account)/*", alice).status == 200)
        try await relay.stop()
    }
}
