import Foundation
@testable import ParleyClient
import ParleyProtocol
import Testing

/// Helpers for tests that drive several devices by hand (`syncOnce`), so that the order in which
/// each device processes its queue is fixed by the test, not by timing.
enum GroupTestSupport {
    /// Syncs `devices` in turn, round after round, until a whole round processes no envelope and
    /// leaves every outbox empty. Records an issue if that does not happen within `maxRounds`.
    static func settle(
        _ devices: [ParleyDevice], maxRounds: Int = 12, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for _ in 0..<maxRounds {
            var changed = false
            for device in devices {
                let before = try processedCount(device)
                let drained = await device.syncOnce(timeout: .seconds(60))
                #expect(drained, "sync of \(device.account.address) did not drain", sourceLocation: sourceLocation)
                if try processedCount(device) != before { changed = true }
            }
            var pending = 0
            for device in devices { pending += try device.store.outboxCount() }
            if !changed && pending == 0 { return }
        }
        Issue.record("devices did not settle within \(maxRounds) rounds", sourceLocation: sourceLocation)
    }

    static func processedCount(_ device: ParleyDevice) throws -> Int {
        try device.store.processedEnvelopeCount()
    }

    /// A group's history on `device`, oldest first.
    static func history(_ device: ParleyDevice, group groupId: String) throws -> [StoredMessage] {
        let conversation = try device.store.groupConversation(groupId: groupId)
        return try device.store.messages(in: conversation.id, limit: DeviceStore.maxPageSize).messages.reversed()
    }

    /// The history rows that carry one of `bodies` or are still "could not decrypt", oldest first,
    /// as the texts a user sees ("<placeholder>" for an undecryptable row).
    static func visible(_ device: ParleyDevice, group groupId: String, among bodies: Set<String>) throws -> [String] {
        try history(device, group: groupId).compactMap { message in
            if message.couldNotDecrypt { return "<placeholder>" }
            guard let body = message.body, bodies.contains(body) else { return nil }
            return body
        }
    }

    /// Three accounts in a group alice created with bob and carol, everyone settled, and carol's
    /// warm-up post read by everyone (each member holds carol's sender key).
    struct WarmGroup {
        let alice: ParleyDevice, bob: ParleyDevice, carol: ParleyDevice
        let groupId: String
        var all: [ParleyDevice] { [alice, bob, carol] }
    }

    static func warmGroup(_ harness: EngineHarness, title: String) async throws -> WarmGroup {
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let carol = try await harness.register("carol")
        let groupId = try await alice.createGroup(title: title, members: [bob.account.name, carol.account.name])
        try await settle([alice, bob, carol])
        try await carol.sendGroup("warm-up", to: groupId)
        try await settle([alice, bob, carol])
        return WarmGroup(alice: alice, bob: bob, carol: carol, groupId: groupId)
    }

    /// Links a second device to `device`'s account (the existing device approves it).
    static func link(_ device: ParleyDevice, harness: EngineHarness, name: String) async throws -> ParleyDevice {
        let link = try await device.startLink()
        let path = harness.dir.appendingPathComponent("\(device.account.name)-\(name).sqlite").path
        let join = Task {
            try await ParleyDevice.join(linkString: link.linkString, serverURL: harness.baseURL, storePath: path, deviceName: name)
        }
        let claim = try await device.awaitClaim(link, timeout: .seconds(60))
        try await device.approve(link, claim: claim)
        return try await join.value.device
    }
}
