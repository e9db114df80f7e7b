import Foundation
import ParleyClient
import ParleyProtocol
import Testing

/// Contacts, conversations and message history: paging, full-text search, dedup, statuses.
@Suite struct MessageHistoryTests {
    static let bob = ProtocolAddress(name: "bob", deviceId: 1)

    @Test(arguments: [false, true])
    func pagesGoNewestFirstWithoutGapsOrOverlaps(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let store = device.store
        let withBob = try store.directConversation(with: "bob")
        let withCarol = try store.directConversation(with: "carol")
        var expected: [MessageID] = []
        for i in 0..<25 {
            // Two messages share each timestamp: ties are broken by local id.
            let id = try store.insertMessage(
                NewMessage(conversation: withBob.id, sender: Self.bob, outgoing: false, receivedAt: Int64(1000 + i / 2), body: "m\(i)")
            ).id
            expected.append(id)
            _ = try store.insertMessage(
                NewMessage(conversation: withCarol.id, sender: ProtocolAddress(name: "carol", deviceId: 1), outgoing: false,
                    receivedAt: Int64(1000 + i), body: "c\(i)"))
        }
        // A message inserted late with an early timestamp (a backlog) sorts by its time.
        let backlog = try store.insertMessage(
            NewMessage(conversation: withBob.id, sender: Self.bob, outgoing: false, receivedAt: 1, body: "old")).id
        expected.insert(backlog, at: 0)
        expected.reverse()
        try device.reopen()

        var seen: [MessageID] = []
        var bodies: [String] = []
        var cursor: MessageCursor? = nil
        var pages = 0
        repeat {
            let page = try device.store.messages(in: withBob.id, before: cursor, limit: 10)
            #expect(page.messages.count <= 10)
            seen += page.messages.map(\.id)
            bodies += page.messages.compactMap(\.body)
            cursor = page.next
            pages += 1
        } while cursor != nil
        #expect(pages == 3)
        #expect(seen == expected)
        #expect(bodies.first == "m24")
        #expect(bodies.last == "old")
        #expect(Set(bodies).count == 26)
        // Exactly a page full: no next cursor pointing at an empty page.
        let all = try device.store.messages(in: withBob.id, limit: 26)
        #expect(all.messages.count == 26 && all.next == nil)
        #expect(throws: DeviceStoreError.self) { try device.store.messages(in: withBob.id, limit: 0) }
        #expect(try device.store.messages(in: ConversationID(rawValue: 999), limit: 5).messages.isEmpty)
    }

    @Test(arguments: [false, true])
    func fullTextSearch(sealed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: sealed)
        let withBob = try device.store.directConversation(with: "bob")
        let group = try device.store.groupConversation(groupId: "g-1", title: "Climbing")
        func add(_ conversation: Conversation, _ body: String?, at time: Int64, undecryptable: Bool = false) throws -> MessageID {
            try device.store.insertMessage(
                NewMessage(conversation: conversation.id, sender: Self.bob, outgoing: false, receivedAt: time, body: body,
                    couldNotDecrypt: undecryptable)
            ).id
        }
        let lunch = try add(withBob, "Lunch at the café tomorrow?", at: 1)
        let rope = try add(group, "Who has the new rope?", at: 2)
        let lunchGroup = try add(group, "lunch after climbing, café on the corner", at: 3)
        _ = try add(withBob, nil, at: 4, undecryptable: true)
        try device.reopen()  // a sealed store rebuilds its in-memory index after opening

        #expect(try device.store.searchMessages("lunch").map(\.id) == [lunchGroup, lunch])
        #expect(try device.store.searchMessages("cafe").map(\.id) == [lunchGroup, lunch])  // diacritics folded
        #expect(try device.store.searchMessages("LUNCH CAFÉ").map(\.id) == [lunchGroup, lunch])  // all words, any case
        #expect(try device.store.searchMessages("lunch rope").isEmpty)
        #expect(try device.store.searchMessages("clim").map(\.id) == [lunchGroup])  // word prefixes
        #expect(try device.store.searchMessages("lunch", in: withBob.id).map(\.id) == [lunch])
        #expect(try device.store.searchMessages("rope").first?.body == "Who has the new rope?")
        #expect(try device.store.searchMessages("   ").isEmpty)
        #expect(try device.store.searchMessages("\"unbalanced AND (").isEmpty)  // query syntax is not interpreted
        #expect(try device.store.searchMessages("lunch", limit: 1).map(\.id) == [lunchGroup])

        // Messages added after the index was built, and deleted ones, are reflected at once.
        let later = try add(withBob, "rope is in the car", at: 5)
        #expect(try device.store.searchMessages("rope").map(\.id) == [later, rope])
        #expect(try device.store.deleteMessage(id: rope))
        #expect(try device.store.deleteMessage(id: rope) == false)
        #expect(try device.store.searchMessages("rope").map(\.id) == [later])
        try device.reopen()
        #expect(try device.store.searchMessages("rope").map(\.id) == [later])
    }

    @Test func aRedeliveredEnvelopeIsStoredOnce() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let conversation = try device.store.directConversation(with: "bob")
        let serverId = UUID()
        let message = NewMessage(
            conversation: conversation.id, serverId: serverId, sender: Self.bob, outgoing: false, sentAt: 10, receivedAt: 20,
            body: "once")
        let first = try device.store.insertMessage(message)
        guard case .inserted(let id) = first else { throw TestFailure("first insert must insert") }
        var again = message
        again.body = "a different body under the same server id"
        try device.reopen()
        #expect(try device.store.insertMessage(again) == .duplicate(id))
        #expect(try device.store.messageId(serverId: serverId) == id)
        let page = try device.store.messages(in: conversation.id, limit: 10)
        #expect(page.messages.count == 1)
        let stored = try #require(page.messages.first)
        #expect(stored.body == "once")
        #expect(stored.serverId == serverId)
        #expect(stored.sentAt == 10 && stored.receivedAt == 20 && stored.sortAt == 20)
        #expect(stored.sender == Self.bob && !stored.outgoing && !stored.couldNotDecrypt)
        // Messages without a server id (outgoing, not yet acknowledged) are never deduplicated.
        let outgoing = NewMessage(conversation: conversation.id, sender: device.address, outgoing: true, sentAt: 30, body: "twice")
        #expect(try device.store.insertMessage(outgoing) != device.store.insertMessage(outgoing))
        // A message for a conversation that does not exist is refused.
        var orphan = message
        orphan.serverId = nil
        orphan.conversation = ConversationID(rawValue: 4242)
        #expect(throws: DeviceStoreError.invalidArgument("no conversation 4242")) { try device.store.insertMessage(orphan) }
    }

    @Test func undecryptableMessagesKeepTheirFlag() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: true)
        let conversation = try device.store.directConversation(with: "bob")
        let id = try device.store.insertMessage(
            NewMessage(conversation: conversation.id, serverId: UUID(), sender: Self.bob, outgoing: false, receivedAt: 5, body: nil,
                couldNotDecrypt: true)
        ).id
        try device.reopen()
        let stored = try #require(try device.store.message(id: id))
        #expect(stored.couldNotDecrypt)
        #expect(stored.body == nil)
        #expect(stored.unreadable == nil)
    }

    @Test func deliveryStatusesPerRecipientOnlyMoveForward() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let group = try device.store.groupConversation(groupId: "g-2")
        let id = try device.store.insertMessage(
            NewMessage(conversation: group.id, sender: device.address, outgoing: true, sentAt: 100, body: "hello all",
                statuses: ["bob": .pending, "carol": .pending])
        ).id
        #expect(try device.store.message(id: id)?.statuses == ["bob": .pending, "carol": .pending])
        #expect(try device.store.setStatus(.sent, for: "bob", of: id))
        #expect(try device.store.setStatus(.read, for: "bob", of: id))
        #expect(try device.store.setStatus(.delivered, for: "bob", of: id) == false)  // late receipt
        #expect(try device.store.setStatus(.failed, for: "bob", of: id) == false)
        #expect(try device.store.setStatus(.failed, for: "carol", of: id))
        #expect(try device.store.setStatus(.pending, for: "carol", of: id))  // retry
        #expect(try device.store.setStatus(.delivered, for: "dave", of: id))  // a recipient added later
        #expect(throws: DeviceStoreError.self) { try device.store.setStatus(.sent, for: "bob", of: MessageID(rawValue: 999)) }
        try device.reopen()
        let stored = try #require(try device.store.message(id: id))
        #expect(stored.statuses == ["bob": .read, "carol": .pending, "dave": .delivered])
        #expect(stored.outgoing && stored.sortAt == 100)
    }

    @Test func contactsAndTheirDevices() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let store = device.store
        try store.saveContact(account: "bob", displayName: "Bob")
        try store.saveContactDevice(account: "bob", deviceId: 1, registrationId: 11)
        try store.saveContactDevice(account: "bob", deviceId: 3, registrationId: 33)
        try store.saveContactDevice(account: "carol", deviceId: 1, registrationId: 5)  // creates carol
        try store.saveContactDevice(account: "bob", deviceId: 3, registrationId: 34)  // re-registered
        try store.saveContact(account: "bob", displayName: "Bobby")
        #expect(throws: DeviceStoreError.self) { try store.saveContact(account: "", displayName: nil) }
        try device.reopen()
        let bob = try #require(try device.store.contact(account: "bob"))
        #expect(bob.displayName == "Bobby")
        #expect(try device.store.contacts().map(\.account) == ["bob", "carol"])
        #expect(try device.store.contact(account: "carol")?.displayName == nil)
        #expect(try device.store.contactDevices(account: "bob") == [
            ContactDevice(deviceId: 1, registrationId: 11), ContactDevice(deviceId: 3, registrationId: 34),
        ])
        try device.store.removeContactDevice(account: "bob", deviceId: 1)
        #expect(try device.store.contactDevices(account: "bob").map(\.deviceId) == [3])
        try device.store.deleteContact(account: "bob")
        #expect(try device.store.contact(account: "bob") == nil)
        #expect(try device.store.contactDevices(account: "bob").isEmpty)
    }

    @Test func conversationsAreUniquePerPeerAndGroup() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var device = try TestDevice.create(name: "alice", in: dir, sealed: false)
        let store = device.store
        let bob = try store.directConversation(with: "bob")
        #expect(try store.directConversation(with: "bob") == bob)
        #expect(bob.kind == .direct(peer: "bob"))
        let group = try store.groupConversation(groupId: "g-9", title: "Book club")
        #expect(try store.groupConversation(groupId: "g-9").title == "Book club")
        #expect(try store.groupConversation(groupId: "g-9", title: "Reading club").id == group.id)
        // A peer named like a group id is still another conversation.
        let odd = try store.directConversation(with: "g-9")
        #expect(odd.id != group.id)
        try store.setTitle("Bob B.", for: bob.id)
        #expect(throws: DeviceStoreError.self) { try store.setTitle("x", for: ConversationID(rawValue: 777)) }
        // The most recently active conversation comes first.
        _ = try store.insertMessage(NewMessage(conversation: bob.id, sender: Self.bob, outgoing: false, receivedAt: 9_999_999_999_999, body: "hi"))
        try device.reopen()
        let all = try device.store.conversations()
        #expect(all.first?.id == bob.id)
        #expect(all.count == 3)
        #expect(try device.store.conversation(id: bob.id)?.title == "Bob B.")
        #expect(try device.store.conversation(id: group.id)?.kind == .group(groupId: "g-9"))
        #expect(try device.store.conversation(id: group.id)?.title == "Reading club")
    }
}
