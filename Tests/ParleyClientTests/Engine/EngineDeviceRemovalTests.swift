import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A device removed from the account, or a link approved and never finished, must not stop the
/// sends of the device that approved it (issue 12): the relay's answer is repaired from (the own
/// device list refreshed, the gone device's sessions and sender-key hand-out records dropped) and
/// the 1:1 message, its transcript to the other own devices, and group messages go out.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EngineDeviceRemovalTests {
    @Test func removedDeviceDoesNotStopTheSendsOfTheDeviceThatApprovedIt() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Self.link(phone, as: "laptop", harness: harness)
        let tablet = try await Self.link(phone, as: "tablet", harness: harness)
        let gone = tablet.account.deviceId
        let groupId = try await bob.createGroup(title: "trip", members: [phone.account.name])

        // The tablet is removed from the laptop (the relay answers 204); the phone, which approved it, is not told.
        #expect(try await Self.removeDevice(gone, as: laptop.account.credentials, harness: harness) == 204)
        await tablet.close()

        let phoneLog = await EventLog(phone)
        #expect(await phone.syncOnce())  // learns the group (its receipts to bob go out too)
        try await phone.sendGroup("group message after the removal", to: groupId)
        let direct = try await phone.send("direct message after the removal", to: bob.account.name)
        #expect(try await Self.outboxDrained(phone))
        #expect(phoneLog.count { if case .sendFailed = $0 { return true } else { return false } } == 0, "\(phoneLog.all)")
        let id = try #require(try phone.store.message(uid: direct, sender: phone.account.name))
        #expect(try phone.store.message(id: id)?.statuses[bob.account.name] == .sent)
        // The phone's own device list was refreshed from the relay and the removed device's session is gone.
        #expect(try phone.store.contactDevices(account: phone.account.name).map(\.deviceId).contains(gone) == false)
        #expect(try phone.store.loadSession(for: ProtocolAddress(name: phone.account.name, deviceId: gone)) == nil)
        #expect(try phone.store.senderKeyHolders(groupId: groupId).contains(ProtocolAddress(name: phone.account.name, deviceId: gone)) == false)

        // Bob gets both; the laptop gets the transcript and the group message.
        #expect(await bob.syncOnce())
        #expect(try Self.bodies(bob, group: groupId).contains("group message after the removal"))
        #expect(try Self.bodies(bob, peer: phone.account.name).contains("direct message after the removal"))
        #expect(await laptop.syncOnce())
        #expect(try Self.bodies(laptop, group: groupId).contains("group message after the removal"))
        #expect(try Self.bodies(laptop, peer: bob.account.name).contains("direct message after the removal"))
        await phone.close(); await laptop.close(); await bob.close()
        await harness.finish()
    }

    @Test func unfinishedLinkDoesNotStopTheSendsOfTheDeviceThatApprovedIt() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Self.link(phone, as: "laptop", harness: harness)

        // A new device claims a link, the phone approves it, and the new device stops there
        // (`parley link join` interrupted): it never uploads its keys, so it never becomes active.
        let link = try await phone.startLink()
        let provisional = try IdentityKeyPair.generate()
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: provisional, timestamp: 0)
        let keys = NewDeviceKeys(
            registrationId: 77, identityKey: Data(provisional.identityKey.serialized),
            signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: [], name: "abandoned")
        let pending = try await RelayClient(baseURL: harness.baseURL).claimLink(ClaimLinkRequest(code: link.code, device: keys))
        let claim = try await phone.awaitClaim(link, timeout: .seconds(30))
        try await phone.approve(link, claim: claim)

        let phoneLog = await EventLog(phone)
        let direct = try await phone.send("direct message after the abandoned link", to: bob.account.name)
        let groupId = try await phone.createGroup(title: "after the link", members: [bob.account.name])
        try await phone.sendGroup("group message after the abandoned link", to: groupId)
        #expect(try await Self.outboxDrained(phone))
        #expect(phoneLog.count { if case .sendFailed = $0 { return true } else { return false } } == 0, "\(phoneLog.all)")
        let id = try #require(try phone.store.message(uid: direct, sender: phone.account.name))
        #expect(try phone.store.message(id: id)?.statuses[bob.account.name] == .sent)
        #expect(try phone.store.contactDevices(account: phone.account.name).map(\.deviceId).contains(pending.deviceId) == false)

        #expect(await bob.syncOnce())
        #expect(try Self.bodies(bob, peer: phone.account.name).contains("direct message after the abandoned link"))
        #expect(try Self.bodies(bob, group: groupId).contains("group message after the abandoned link"))
        #expect(await laptop.syncOnce())
        #expect(try Self.bodies(laptop, peer: bob.account.name).contains("direct message after the abandoned link"))
        #expect(try Self.bodies(laptop, group: groupId).contains("group message after the abandoned link"))
        await phone.close(); await laptop.close(); await bob.close()
        await harness.finish()
    }

    /// `removeDevice` of another device forgets it at once; the removed device learns it from the relay's `401`
    /// (typed `RelayClientError.deviceRemoved`), stops connecting and sending, and keeps its outbox.
    @Test func removedDeviceKnowsItWasRemoved() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Self.link(phone, as: "laptop", harness: harness)
        let gone = laptop.account.deviceId
        try await phone.send("before", to: bob.account.name)  // the phone holds a session with the laptop now
        #expect(try phone.store.loadSession(for: ProtocolAddress(name: phone.account.name, deviceId: gone)) != nil)

        try await phone.removeDevice(gone)
        #expect(try phone.store.contactDevices(account: phone.account.name).map(\.deviceId).contains(gone) == false)
        #expect(try phone.store.loadSession(for: ProtocolAddress(name: phone.account.name, deviceId: gone)) == nil)
        await #expect(throws: ClientError.invalidArgument("\(phone.account.name) has no device 99")) { try await phone.removeDevice(99) }
        try await phone.send("after", to: bob.account.name)
        #expect(try await Self.outboxDrained(phone))

        // The removed laptop: its connection is refused, and it says why.
        #expect(await laptop.syncOnce(timeout: .seconds(30)) == false)
        #expect(await laptop.removedFromAccount)
        await #expect(throws: RelayClientError.deviceRemoved) {
            try await RelayClient(baseURL: harness.baseURL, credentials: laptop.account.credentials).preKeyStatus()
        }
        // A send is refused locally now; nothing queued before is given up.
        await #expect(throws: ClientError.deviceRemoved) { try await laptop.send("from a removed device", to: bob.account.name) }
        await #expect(throws: RelayClientError.deviceRemoved) { try await laptop.deviceList(of: phone.account.name) }
        await phone.close(); await laptop.close(); await bob.close()
        await harness.finish()
    }

    /// A device that removes itself: the store is marked (and stays so when opened again), sends are refused,
    /// it does not connect, its history stays readable; the other devices keep sending.
    @Test func removingThisDeviceLeavesItsStoreUnableToSend() async throws {
        let harness = try await EngineHarness()
        let phone = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let laptop = try await Self.link(phone, as: "laptop", harness: harness)
        try await bob.send("hello both", to: phone.account.name)
        #expect(await laptop.syncOnce())
        let laptopPath = harness.dir.appendingPathComponent("\(phone.account.name)-laptop.sqlite").path

        try await laptop.removeDevice(laptop.account.deviceId)
        #expect(await laptop.removedFromAccount)
        #expect(try laptop.store.removedFromAccountAt() != nil)
        await laptop.close()
        let reopened = try ParleyDevice.open(storePath: laptopPath)
        #expect(await reopened.removedFromAccount)
        #expect(try Self.bodies(reopened, peer: bob.account.name) == ["hello both"])
        await #expect(throws: ClientError.deviceRemoved) { try await reopened.send("no", to: bob.account.name) }
        #expect(await reopened.syncOnce() == false)
        await reopened.close()

        let phoneLog = await EventLog(phone)
        #expect(await phone.syncOnce())
        try await phone.send("the phone goes on", to: bob.account.name)
        #expect(try await Self.outboxDrained(phone))
        #expect(phoneLog.count { if case .sendFailed = $0 { return true } else { return false } } == 0, "\(phoneLog.all)")
        #expect(await bob.syncOnce())
        #expect(try Self.bodies(bob, peer: phone.account.name).contains("the phone goes on"))
        await phone.close(); await bob.close()
        await harness.finish()
    }

    // MARK: helpers

    /// Waits (generously) until `device`'s outbox is empty: receipts queued while a backlog was processed are
    /// sent by a flush that may still run when the next send returns (that send then goes with it).
    static func outboxDrained(_ device: ParleyDevice) async throws -> Bool {
        for _ in 0..<1200 {
            if try device.store.outboxCount() == 0 { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Links a new device to `phone`'s account through the engine (start, join, approve).
    static func link(_ phone: ParleyDevice, as name: String, harness: EngineHarness) async throws -> ParleyDevice {
        let link = try await phone.startLink()
        let path = harness.dir.appendingPathComponent("\(phone.account.name)-\(name).sqlite").path
        let baseURL = harness.baseURL
        let join = Task { try await ParleyDevice.join(linkString: link.linkString, serverURL: baseURL, storePath: path, deviceName: name) }
        let claim = try await phone.awaitClaim(link, timeout: .seconds(60))
        try await phone.approve(link, claim: claim)
        return try await join.value.device
    }

    /// `DELETE /v1/devices/{id}` as `credentials`' device, straight at the relay; returns the HTTP status.
    static func removeDevice(_ deviceId: UInt32, as credentials: DeviceCredentials, harness: EngineHarness) async throws -> Int {
        let url = try #require(URL(string: "\(harness.baseURL)/v1/devices/\(deviceId)"))
        var request = URLRequest(url: url)
        request.httpMethod = "DELETE"
        request.setValue(credentials.authorizationHeader, forHTTPHeaderField: "Authorization")
        return try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { _, response, error in
                if let error { continuation.resume(throwing: error) } else {
                    continuation.resume(returning: (response as? HTTPURLResponse)?.statusCode ?? 0)
                }
            }.resume()
        }
    }

    static func bodies(_ device: ParleyDevice, peer: String) throws -> [String] {
        try device.store.messages(in: try device.store.directConversation(with: peer).id, limit: 100).messages.compactMap(\.body)
    }

    static func bodies(_ device: ParleyDevice, group: String) throws -> [String] {
        try device.store.messages(in: try device.store.groupConversation(groupId: group).id, limit: 100).messages.compactMap(\.body)
    }
}
