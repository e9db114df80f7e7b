import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

/// Account recovery (issue 12): a user who lost every device takes the name back with the recovery code shown
/// at registration; the old devices lose the relay at once; without the code, or with a wrong one, the name
/// stays taken; guessing is bounded per account (and per source). On both store backends.
@Suite("Account recovery", .timeLimit(.minutes(4)))
struct AccountRecoveryTests {
    static func recover(_ http: HTTPTestClient, _ name: String, code: String, keys: NewDeviceKeys = Fixtures.keys()) async throws
        -> HTTPTestClient.Reply
    {
        try await http.call(.POST, "/v1/accounts/recover", body: RecoverAccountRequest(name: name, recoveryCode: code, device: keys))
    }

    /// A well-formed code that is not the account's.
    static func otherCode(than code: String) -> String {
        var other: String
        repeat { other = RecoveryCode.generate() } while other == code
        return other
    }

    @Test(arguments: TestBackend.available)
    func theCodeRecoversTheNameAndEveryOldDeviceLosesTheRelay(_ backend: TestBackend) async throws {
        let relay = try await TestRelay.start(databasePath: try backend.freshDatabase())
        let http = relay.http
        let name = Fixtures.uniqueName("alice")
        let alice = try await http.register(name, keys: Fixtures.keys(registrationId: 900))
        let code = try #require(alice.recoveryCode)
        #expect(code.count == 39 && code.split(separator: "-").count == 8, "not 8 groups of 4: \(code)")
        #expect(RecoveryCode.normalize(code) != nil)
        let second = try await http.link(from: alice)
        let bob = try await http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 901))
        #expect(try await http.sendToAll(from: bob, to: name).status == 200)
        // An open session of an old device.
        let oldSession = try await relay.connect(second)
        #expect(await eventually(timeout: .seconds(10)) { await relay.running.core.hub.connectedDevices(of: name) == 1 })

        // Typed differently (upper case, spaces instead of dashes): the same code.
        let keys = Fixtures.keys(registrationId: 902)
        let reply = try await Self.recover(http, name, code: code.uppercased().replacingOccurrences(of: "-", with: " "), keys: keys)
        #expect(reply.status == 200, "\(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
        let recovered = try reply.decode(DeviceCredentials.self)
        #expect(recovered.account == name && recovered.deviceId == 1)
        let newCode = try #require(recovered.recoveryCode)
        #expect(newCode != code)

        // Every old credential is dead at once, and the old session is closed.
        for old in [alice, second] { #expect(try await http.call(.GET, "/v1/devices", old).status == 401) }
        #expect(await eventually(timeout: .seconds(10)) { await relay.running.core.hub.connectedDevices(of: name) == 0 })
        await oldSession.close()

        // The account is the new device alone, under the new identity key; what was queued for the old devices is gone.
        let devices = try await http.call(.GET, "/v1/devices", recovered).decode(DeviceListResponse.self).devices
        #expect(devices.map(\.deviceId) == [1])
        #expect(devices.first?.registrationId == 902)
        let bundle = try await http.call(.GET, "/v1/keys/\(name)/1", bob).decode(PreKeyBundleResponse.self)
        #expect(bundle.devices.first?.identityKey == keys.identityKey)
        let session = try await relay.connect(recovered)
        #expect(try await session.backlog().isEmpty, "the old devices' queue reached the recovered device")
        await session.close()

        // A contact still addressing the old device 1 (registration id 900) is told it is stale: it sets up anew.
        let stale = try await http.call(
            .PUT, "/v1/messages/\(name)", bob,
            body: SendMessageRequest(
                messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 900, type: 1, content: Fixtures.bytes(100))],
                ownDeviceMessages: []))
        #expect(stale.status == 410)

        // The old code was replaced: it recovers nothing now; the new one does.
        #expect(try await Self.recover(http, name, code: code).status == 403)
        #expect(try await Self.recover(http, name, code: newCode).status == 200)
        try await relay.stop()
    }

    @Test(arguments: TestBackend.available)
    func withoutTheCodeOrWithAWrongOneTheNameStaysTaken(_ backend: TestBackend) async throws {
        let relay = try await TestRelay.start(databasePath: try backend.freshDatabase())
        let http = relay.http
        let name = Fixtures.uniqueName("alice")
        let alice = try await http.register(name)
        let code = try #require(alice.recoveryCode)

        let again = try await http.call(.POST, "/v1/accounts", body: RegisterAccountRequest(name: name, device: Fixtures.keys()))
        #expect(again.status == 409)
        #expect(again.error?.code == .nameTaken)
        let wrong = try await Self.recover(http, name, code: Self.otherCode(than: code))
        #expect(wrong.status == 403)
        #expect(wrong.error?.code == .recoveryRefused)
        #expect(wrong.error?.message == "wrong recovery code")
        let malformed = try await Self.recover(http, name, code: "1234")
        #expect(malformed.status == 400)
        #expect(try await Self.recover(http, Fixtures.uniqueName("nobody"), code: code).status == 404)

        // Nothing changed: the owner's device works, the account is still its one device.
        #expect(try await http.call(.GET, "/v1/devices", alice).status == 200)
        let devices = try await http.call(.GET, "/v1/devices", alice).decode(DeviceListResponse.self).devices
        #expect(devices.map(\.deviceId) == [1])
        try await relay.stop()
    }

    @Test(arguments: TestBackend.available)
    func guessingIsBoundedPerAccountEvenForTheRightCode(_ backend: TestBackend) async throws {
        let relay = try await TestRelay.start(databasePath: try backend.freshDatabase())
        let http = relay.http
        let name = Fixtures.uniqueName("alice")
        let alice = try await http.register(name)
        let code = try #require(alice.recoveryCode)

        for attempt in 1...RelayLimits.recoveryAttemptsPerAccount {
            let reply = try await Self.recover(http, name, code: Self.otherCode(than: code))
            #expect(reply.status == 403, "attempt \(attempt): \(reply.status)")
        }
        // The N+1st attempt in the window is refused before the code is looked at, the right one included, and
        // says when to try again (the rest of the hour-long window).
        let refused = try await Self.recover(http, name, code: code)
        #expect(refused.status == 429)
        #expect(refused.error?.code == .rateLimited)
        let retryAfter = try #require(refused.retryAfter.flatMap(Int.init))
        #expect(retryAfter > 3_000 && retryAfter <= Int(RelayLimits.recoveryWindowSeconds))
        #expect(refused.error?.message.contains("retry in \(retryAfter) s") == true)
        // The account was not recovered: the owner's device still works.
        #expect(try await http.call(.GET, "/v1/devices", alice).status == 200)
        try await relay.stop()
    }

    @Test func guessingIsBoundedPerSourceAcrossAccounts() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        // Fewer attempts per account than its own bound, over enough accounts to pass the source's bound.
        let perAccount = RelayLimits.recoveryAttemptsPerAccount - 1
        let accounts = RelayLimits.recoveryAttemptsPerSource / perAccount + 1
        var statuses: [Int] = []
        for _ in 0..<accounts {
            let name = Fixtures.uniqueName("a")
            let code = try #require(try await http.register(name).recoveryCode)
            for _ in 0..<perAccount { statuses.append(try await Self.recover(http, name, code: Self.otherCode(than: code)).status) }
        }
        #expect(statuses.prefix(RelayLimits.recoveryAttemptsPerSource).allSatisfy { $0 == 403 })
        #expect(statuses.dropFirst(RelayLimits.recoveryAttemptsPerSource).allSatisfy { $0 == 429 })
        #expect(statuses.count > RelayLimits.recoveryAttemptsPerSource)
        try await relay.stop()
    }

    /// The store's side: the window is fixed from its first attempt and starts again after it; a recovery whose
    /// code changed meanwhile (another recovery won) is refused and changes nothing.
    @Test(arguments: TestBackend.available)
    func theStoreCountsAttemptsPerWindowAndRecoversOnce(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let name = Fixtures.uniqueName("w")
        let window: Int64 = 60_000
        _ = try await store.createAccount(
            name: name, device: Fixtures.keys(), credentialHash: Credentials.hash("x"), recoveryCodeHash: "hash-1", now: 1_000)
        for i in 0..<5 {
            let challenge = try await store.recoveryAttempt(name: name, now: 10_000 + Int64(i), windowMillis: window, maxAttempts: 5)
            #expect(challenge.codeHash == "hash-1")
        }
        await #expect(throws: RelayError.rateLimitedFor(seconds: 60)) {
            _ = try await store.recoveryAttempt(name: name, now: 10_005, windowMillis: window, maxAttempts: 5)
        }
        // The window ends 60 s after its first attempt: a new one starts.
        let challenge = try await store.recoveryAttempt(name: name, now: 70_000, windowMillis: window, maxAttempts: 5)

        let removed = try await store.recoverAccount(
            challenge, newCodeHash: "hash-2", device: Fixtures.keys(registrationId: 77), credentialHash: Credentials.hash("y"), now: 70_001)
        #expect(removed == [1])
        await #expect(throws: RelayError.recoveryRefused("the account was recovered meanwhile")) {
            _ = try await store.recoverAccount(
                challenge, newCodeHash: "hash-3", device: Fixtures.keys(), credentialHash: Credentials.hash("z"), now: 70_002)
        }
        #expect(try await store.devices(account: name).map(\.registrationId) == [77])
        #expect(try await store.recoveryAttempt(name: name, now: 70_003, windowMillis: window, maxAttempts: 5).codeHash == "hash-2")

        let without = Fixtures.uniqueName("n")
        _ = try await store.createAccount(name: without, device: Fixtures.keys(), credentialHash: Credentials.hash("x"), now: 1_000)
        await #expect(throws: RelayError.recoveryRefused("this account has no recovery code")) {
            _ = try await store.recoveryAttempt(name: without, now: 10_000, windowMillis: window, maxAttempts: 5)
        }
        await #expect(throws: RelayError.notFound("unknown account")) {
            _ = try await store.recoveryAttempt(name: Fixtures.uniqueName("x"), now: 10_000, windowMillis: window, maxAttempts: 5)
        }
    }
}
