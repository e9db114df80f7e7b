import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// Several devices per account, and identity changes.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineMultiDeviceTests {
    @Test func twoDevicesShareHistoryMessagesAndGroups() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let earlier = try await phone.send("before the laptop", to: bob.account.name)
        #expect(await bob.syncOnce())

        // Link the laptop: the phone shows the link, the laptop joins, the phone approves.
        let link = try await phone.startLink()
        let laptopPath = harness.dir.appendingPathComponent("alice-laptop.sqlite").path
        let join = Task { try await ParleyDevice.join(linkString: link.linkString, serverURL: harness.baseURL, storePath: laptopPath, deviceName: "laptop") }
        let claim = try await phone.awaitClaim(link, timeout: .seconds(30))
        try await phone.approve(link, claim: claim)
        let (laptop, imported, archivedCount) = try await join.value
        #expect(laptop.account.name == phone.account.name)
        #expect(laptop.account.deviceId != phone.account.deviceId)
        #expect(imported >= 1)
        #expect(imported == archivedCount)
        #expect(try laptop.store.identityKeyPair().identityKey == (try phone.store.identityKeyPair().identityKey))
        let archived = try laptop.store.messages(in: try laptop.store.directConversation(with: bob.account.name).id, limit: 10).messages
        #expect(archived.map(\.body) == ["before the laptop"])
        #expect(archived.map(\.messageUid) == [earlier])  // later receipts for it find it on the laptop too

        let phoneLog = await EventLog(phone), laptopLog = await EventLog(laptop), bobLog = await EventLog(bob)
        let loops = [Task { await phone.run() }, Task { await laptop.run() }, Task { await bob.run() }]

        // What the phone sends appears on the laptop; what bob sends reaches both.
        try await phone.send("from my phone", to: bob.account.name)
        await bobLog.wait(for: "bob gets the phone's message") { $0.messageBody == "from my phone" }
        await laptopLog.wait(for: "the laptop gets the transcript") {
            if case .message(let m) = $0 { return m.body == "from my phone" && m.outgoing }
            return false
        }
        try await bob.send("to both of your devices", to: phone.account.name)
        await phoneLog.wait(for: "phone receives") { $0.messageBody == "to both of your devices" }
        await laptopLog.wait(for: "laptop receives") { $0.messageBody == "to both of your devices" }
        // Read on the phone: bob gets the READ receipt, and the laptop marks it read as well.
        let onLaptop = try laptop.store.directConversation(with: bob.account.name)
        #expect(try laptop.store.unreadIncoming(in: onLaptop.id, reader: laptop.account.name).count == 1)
        #expect(try await phone.markRead(try phone.store.directConversation(with: bob.account.name).id) == 1)
        for _ in 0..<100 where try laptop.store.unreadIncoming(in: onLaptop.id, reader: laptop.account.name).count > 0 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try laptop.store.unreadIncoming(in: onLaptop.id, reader: laptop.account.name).isEmpty)

        // A group across devices: bob's group message reaches both of alice's devices, and what
        // the laptop posts reaches bob and the phone.
        let groupId = try await bob.createGroup(title: "trip", members: [phone.account.name])
        try await bob.sendGroup("group hello", to: groupId)
        await phoneLog.wait(for: "phone gets the group message") { $0.messageBody == "group hello" }
        await laptopLog.wait(for: "laptop gets the group message") { $0.messageBody == "group hello" }
        try await laptop.sendGroup("from the laptop", to: groupId)
        await bobLog.wait(for: "bob gets the laptop's group message") { $0.messageBody == "from the laptop" }
        await phoneLog.wait(for: "the phone sees its own account's post") {
            if case .message(let m) = $0 { return m.body == "from the laptop" && m.outgoing }
            return false
        }
        for loop in loops { loop.cancel() }
        await phone.close(); await laptop.close(); await bob.close()
        await harness.finish()
    }

    @Test func identityChangeIsDetectedAndVerifiedContactsRefuseIt() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        try await alice.send("hi", to: bob.account.name)
        let before = try alice.safetyNumber(with: bob.account.name)
        try alice.verify(bob.account.name)
        #expect(try alice.isVerified(bob.account.name))

        // Bob reinstalls: a new identity and registration id on the same device.
        let aliceLog = await EventLog(alice)
        try await Self.reinstall(bob, harness: harness)
        try bob.store.deleteSession(for: alice.account.address)  // (bob's old store is gone in reality)
        try alice.store.deleteSession(for: bob.account.address)  // alice must set up a new session
        let uid = try await alice.send("still there?", to: bob.account.name)
        await aliceLog.wait(for: "identity change refused") { $0 == .identityChanged(account: bob.account.name, accepted: false) }
        let id = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.message(id: id)?.statuses[bob.account.name] == .failed)

        // After comparing numbers anew, alice trusts the new key; the safety number changed.
        try await alice.trustNewIdentity(of: bob.account.name)
        try await alice.send("now?", to: bob.account.name)
        let after = try alice.safetyNumber(with: bob.account.name)
        #expect(after.displayString != before.displayString)
        #expect(try alice.store.outboxCount() == 0)
        await alice.close(); await bob.close()
        await harness.finish()
    }

    /// Replaces `device`'s published identity with a fresh one (what a reinstall looks like to peers).
    static func reinstall(_ device: ParleyDevice, harness: EngineHarness) async throws {
        let identity = try IdentityKeyPair.generate()
        let signed = try SignedPreKeyRecord.generate(id: 9_000, identity: identity, timestamp: 0)
        let relay = RelayClient(baseURL: harness.baseURL, credentials: device.account.credentials)
        _ = try await relay.uploadPreKeys(
            UploadPreKeysRequest(
                identityKey: Data(identity.identityKey.serialized),
                signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature))))
    }
}
