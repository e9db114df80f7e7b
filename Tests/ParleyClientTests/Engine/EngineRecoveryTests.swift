import Foundation
import ParleyProtocol
import ParleyWire
import Testing

@testable import ParleyClient

/// Account recovery through the engine and the real relay (issue 12): the account's owner, every device lost,
/// takes the name back with the recovery code; the old device's credentials die; a contact who messages the
/// recovered account sees the safety-number change through the usual identity-change path, and the message
/// arrives.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineRecoveryTests {
    @Test func aRecoveredAccountIsASafetyNumberChangeForItsContacts() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await EngineIdentityChangeTests.pair(harness)
        let aliceName = alice.account.name
        let code = try #require(alice.recoveryCode, "registration showed no recovery code")
        let oldIdentity = try alice.store.identityKeyPair().identityKey
        let oldCredentials = alice.account.credentials
        await alice.close()  // the phone is lost

        let recovered = try await ParleyDevice.recover(
            name: aliceName, recoveryCode: code, serverURL: harness.baseURL,
            storePath: harness.dir.appendingPathComponent("alice-new.sqlite").path)
        #expect(recovered.account.name == aliceName && recovered.account.deviceId == 1)
        #expect(try recovered.store.identityKeyPair().identityKey != oldIdentity)
        #expect(recovered.recoveryCode != nil && recovered.recoveryCode != code)
        await #expect(throws: RelayClientError.self) {
            _ = try await RelayClient(baseURL: harness.baseURL, credentials: oldCredentials).devices(of: aliceName)
        }

        // Bob writes to Alice as before: the relay says his session's device is stale, the new bundle carries
        // the new key, and Bob is warned (unverified contact: the message goes).
        let bobLog = await EventLog(bob)
        try await bob.send("is this still you?", to: aliceName)
        await bobLog.wait(for: "the safety-number change") { $0 == .identityChanged(account: aliceName, accepted: true) }
        #expect(try bob.pendingIdentityChange(of: aliceName)?.refused == false)
        #expect(try EngineIdentityChangeTests.history(bob, with: aliceName).filter(\.notice).map(\.body) == [
            "your safety number with \(aliceName) changed"
        ])
        #expect(try bob.store.identity(for: ProtocolAddress(name: aliceName, deviceId: 1)) == (try recovered.store.identityKeyPair().identityKey))

        #expect(await recovered.syncOnce())
        #expect(try EngineIdentityChangeTests.history(recovered, with: bob.account.name).contains { $0.body == "is this still you?" })
        // And back: Bob's device takes the answer under the new key without a second warning line.
        try await recovered.send("yes, new phone", to: bob.account.name)
        #expect(await bob.syncOnce())
        await bobLog.wait(for: "the answer") { $0.messageBody == "yes, new phone" }
        #expect(try EngineIdentityChangeTests.history(bob, with: aliceName).filter(\.notice).count == 1)
        await recovered.close(); await bob.close()
        await harness.finish()
    }

    /// Recovery starts from an empty store, but the account's groups are the relay's: the recovered device lists
    /// them with their members and admins at once (not only after the next group event) and can post to them.
    @Test func aRecoveredAccountKnowsItsGroupsAndPostsToThem() async throws {
        let harness = try await EngineHarness()
        let (alice, bob) = try await EngineIdentityChangeTests.pair(harness)
        let carol = try await harness.register("carol")
        let aliceName = alice.account.name
        let groupId = try await alice.createGroup(title: "hikers", members: [bob.account.name, carol.account.name])
        #expect(await bob.syncOnce())
        let view = try await alice.groupView(groupId)
        let code = try #require(alice.recoveryCode)
        await alice.close()  // the phone is lost

        let recovered = try await ParleyDevice.recover(
            name: aliceName, recoveryCode: code, serverURL: harness.baseURL,
            storePath: harness.dir.appendingPathComponent("alice-new.sqlite").path)
        let groups = try await recovered.groups()
        #expect(groups.count == 1)
        #expect(groups.first?.members.sorted() == view.members)
        let recoveredView = try await recovered.groupView(groupId)
        #expect(recoveredView.members == view.members && recoveredView.admins == view.admins)
        #expect(recoveredView.epoch == view.epoch)

        let bobLog = await EventLog(bob)
        _ = try await recovered.sendGroup("back on a new phone", to: groupId)
        #expect(await bob.syncOnce())
        await bobLog.wait(for: "the group post from the recovered device") { $0.messageBody == "back on a new phone" }
        await recovered.close(); await bob.close(); await carol.close()
        await harness.finish()
    }

    @Test func aWrongCodeLeavesTheAccountAndNoStore() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let code = try #require(alice.recoveryCode)
        var wrong = Array(code)
        wrong[0] = wrong[0] == "0" ? "1" : "0"
        let path = harness.dir.appendingPathComponent("thief.sqlite").path
        do {
            _ = try await ParleyDevice.recover(name: alice.account.name, recoveryCode: String(wrong), serverURL: harness.baseURL, storePath: path)
            Issue.record("recovered with a wrong code")
        } catch RelayClientError.rejected(let status, let errorCode, _) {
            #expect(status == 403 && errorCode == .recoveryRefused)
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        // Alice's device still works.
        #expect(try await alice.deviceList(of: alice.account.name).map(\.deviceId) == [1])
        await alice.close()
        await harness.finish()
    }
}
