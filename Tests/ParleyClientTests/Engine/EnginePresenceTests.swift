import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

@Suite(.serialized, .timeLimit(.minutes(4)))
struct EnginePresenceTests {
    @Test func presenceAndTypingReachTheContact() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        // The relay shows presence and relays typing only between contacts: a message each way first.
        _ = try await alice.send("hi bob", to: bob.account.name)
        #expect(await bob.syncOnce())
        _ = try await bob.send("hi alice", to: alice.account.name)
        #expect(await alice.syncOnce())
        let bobLog = await EventLog(bob), aliceLog = await EventLog(alice)
        try await bob.watchPresence([alice.account.name])
        let bobLoop = Task { await bob.run() }
        await bobLog.wait(for: "alice offline at first") { $0 == .presence(account: alice.account.name, online: false, lastSeen: nil) || {
            if case .presence(let account, let online, _) = $0 { return account == alice.account.name && !online }
            return false
        }($0) }
        let aliceLoop = Task { await alice.run() }
        await bobLog.wait(for: "alice comes online") {
            if case .presence(let account, let online, _) = $0 { return account == alice.account.name && online }
            return false
        }
        await aliceLog.wait(for: "alice connected") { $0 == .backlogDrained }
        try await alice.setTyping(true, to: bob.account.name)
        await bobLog.wait(for: "typing") {
            if case .typing(let account, _, let group, let started) = $0 { return account == alice.account.name && group == nil && started }
            return false
        }
        aliceLoop.cancel()
        await alice.close()
        await bobLog.wait(for: "alice goes offline") {
            if case .presence(let account, let online, let lastSeen) = $0 { return account == alice.account.name && !online && lastSeen != nil }
            return false
        }
        bobLoop.cancel()
        await bob.close()
        await harness.finish()
    }

    @Test func oneTimePreKeysAreRefilledWhenTheyRunLow() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let relay = RelayClient(baseURL: harness.baseURL, credentials: alice.account.credentials, http: ParleyHTTP.shared)
        for _ in 0..<95 { _ = try await relay.bundles(account: bob.account.name, deviceId: bob.account.deviceId) }
        let bobRelay = RelayClient(baseURL: harness.baseURL, credentials: bob.account.credentials, http: ParleyHTTP.shared)
        let drained = try await bobRelay.preKeyStatus()
        #expect(drained.oneTimePreKeyCount == 5)
        // The one-time Kyber prekeys (20) went first; later bundles carried the last-resort one.
        #expect(drained.kyberOneTimePreKeyCount == 0)
        #expect(drained.hasKyberLastResortPreKey)
        #expect(await bob.syncOnce())
        let status = try await bobRelay.preKeyStatus()
        #expect(status.oneTimePreKeyCount == 105)
        #expect(status.kyberOneTimePreKeyCount == KeyManager().policy.kyberBatchSize)
        #expect(!status.refillNeeded)
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
