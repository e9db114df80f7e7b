import Foundation
import GRDB
@testable import ParleyClient
import ParleyProtocol
import Testing

/// Receipts per recipient device and per group member (client.md §4), through a real relay.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct EngineReceiptTests {
    static func device(_ receipts: [RecipientReceipts], _ account: String, _ deviceId: UInt32) -> DeviceReceipt? {
        receipts.first { $0.account == account }?.devices.first { $0.deviceId == deviceId }
    }

    @Test func aRecipientWithTwoDevicesDeliversOnOneThenBothAndReadsOnOne() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let phone = try await harness.register("bob")
        let laptop = try await GroupTestSupport.link(phone, harness: harness, name: "laptop")
        let bob = phone.account.name
        let (phoneId, laptopId) = (phone.account.deviceId, laptop.account.deviceId)

        let uid = try await alice.send("to both of bob's devices", to: bob)
        var receipts = try alice.receipts(ofMessage: uid)
        #expect(receipts.map(\.account) == [bob])
        #expect(receipts.first?.status == .sent)
        #expect(receipts.first?.sentAt != nil)
        #expect(receipts.first?.devices.map(\.deviceId).sorted() == [phoneId, laptopId].sorted())
        #expect(receipts.first?.devices.allSatisfy { $0.sentAt != nil && $0.deliveredAt == nil && $0.readAt == nil } == true)
        let id = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.receiptSummary(of: id, group: false) == ReceiptSummary(recipients: 1, total: 2, delivered: 0, read: 0, pending: 0, failed: 0, perDevice: true))

        // The phone syncs: delivered by one device of two.
        _ = await phone.syncOnce(timeout: .seconds(60))
        _ = await alice.syncOnce(timeout: .seconds(60))
        receipts = try alice.receipts(ofMessage: uid)
        #expect(receipts.first?.status == .delivered)
        #expect(Self.device(receipts, bob, phoneId)?.deliveredAt != nil)
        #expect(Self.device(receipts, bob, laptopId)?.deliveredAt == nil)
        #expect(try alice.store.receiptSummary(of: id, group: false).delivered == 1)

        // The laptop too: both.
        _ = await laptop.syncOnce(timeout: .seconds(60))
        _ = await alice.syncOnce(timeout: .seconds(60))
        receipts = try alice.receipts(ofMessage: uid)
        #expect(Self.device(receipts, bob, laptopId)?.deliveredAt != nil)
        #expect(try alice.store.receiptSummary(of: id, group: false) == ReceiptSummary(recipients: 1, total: 2, delivered: 2, read: 0, pending: 0, failed: 0, perDevice: true))

        // Read on the phone only.
        #expect(try await phone.markRead(try phone.store.directConversation(with: alice.account.name).id) == 1)
        _ = await alice.syncOnce(timeout: .seconds(60))
        receipts = try alice.receipts(ofMessage: uid)
        #expect(receipts.first?.status == .read)
        let read = try #require(Self.device(receipts, bob, phoneId))
        #expect(read.readAt != nil)
        #expect(try #require(read.deliveredAt) <= (read.readAt ?? 0))
        #expect(Self.device(receipts, bob, laptopId)?.readAt == nil)
        #expect(try alice.store.receiptSummary(of: id, group: false) == ReceiptSummary(recipients: 1, total: 2, delivered: 2, read: 1, pending: 0, failed: 0, perDevice: true))
        // A repeated receipt changes nothing.
        let before = try alice.store.receipts(of: id)
        #expect(try alice.store.recordReceipt(.read, from: ProtocolAddress(name: bob, deviceId: phoneId), of: id, at: Int64.max) == false)
        #expect(try alice.store.receipts(of: id) == before)

        await alice.close(); await phone.close(); await laptop.close()
        await harness.finish()
    }

    @Test func aGroupOfFiveWhereThreeRead() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        var members: [ParleyDevice] = []
        for i in 0..<5 { members.append(try await harness.register("m\(i)")) }
        let groupId = try await alice.createGroup(title: "five", members: members.map(\.account.name))
        try await GroupTestSupport.settle([alice] + members)

        let uid = try await alice.sendGroup("hello all five", to: groupId)
        try await GroupTestSupport.settle([alice] + members)
        let id = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.receiptSummary(of: id, group: true) == ReceiptSummary(recipients: 5, total: 5, delivered: 5, read: 0, pending: 0, failed: 0, perDevice: false))

        for member in members.prefix(3) {
            #expect(try await member.markRead(try member.store.groupConversation(groupId: groupId).id) >= 1)
        }
        try await GroupTestSupport.settle([alice] + members)
        let receipts = try alice.receipts(ofMessage: uid)
        #expect(receipts.map(\.account).sorted() == members.map(\.account.name).sorted())
        for (index, member) in members.enumerated() {
            let entry = try #require(receipts.first { $0.account == member.account.name })
            #expect(entry.status == (index < 3 ? .read : .delivered))
            #expect(entry.devices.map(\.deviceId) == [member.account.deviceId])
            #expect(entry.devices.first?.deliveredAt != nil)
            #expect((entry.devices.first?.readAt != nil) == (index < 3))
        }
        #expect(try alice.store.receiptSummary(of: id, group: true) == ReceiptSummary(recipients: 5, total: 5, delivered: 5, read: 3, pending: 0, failed: 0, perDevice: false))
        await alice.close()
        for member in members { await member.close() }
        await harness.finish()
    }

    /// A store made before `client-v7-receipts` (its statuses per account) keeps them when migrated.
    @Test func aStoreFromBeforeTheMigrationKeepsItsStatuses() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("old.sqlite")
        var store = try DeviceStore.create(
            at: path, identity: try IdentityKeyPair.generate(), registrationId: 7, passphrase: nil, cost: .interactive)
        let conversation = try store.directConversation(with: "bob")
        guard case .inserted(let id) = try store.insertMessage(
            NewMessage(
                conversation: conversation.id, sender: ProtocolAddress(name: "alice", deviceId: 1), outgoing: true, sentAt: 1_000,
                body: "before", statuses: ["bob": .pending], messageUid: "0123abcd-0000-0000-0000-000000000000"))
        else { throw TestFailure("not inserted") }
        try store.setStatus(.read, for: "bob", of: id)
        try store.close()
        // Undo client-v7-receipts: what a store written by the previous release looks like.
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(sql: "DROP TABLE message_receipt")
                try db.execute(sql: "ALTER TABLE message_status DROP COLUMN sent_at")
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'client-v7-receipts'")
            }
            try queue.close()
        }
        store = try DeviceStore.open(at: path)
        #expect(try store.message(id: id)?.statuses == ["bob": .read])
        let receipts = try store.receipts(of: id)
        #expect(receipts == [RecipientReceipts(account: "bob", status: .read, sentAt: nil, devices: [])])
        #expect(try store.receiptSummary(of: id, group: false) == ReceiptSummary(recipients: 1, total: 1, delivered: 1, read: 1, pending: 0, failed: 0, perDevice: false))
        #expect(try store.messages(uidPrefix: "0123AB") == [id])
        #expect(try store.messages(uidPrefix: "0124").isEmpty)
        try store.close()
    }
}
