import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// Groups: membership at the relay, content through sender keys. Each device has its own
/// sender key per group, handed to every member device over pairwise sessions before its first
/// use there; a removal rotates it, so removed members cannot read what follows.
extension ParleyDevice {
    /// Creates a group with `members` (account names) and announces its title to them.
    public func createGroup(title: String, members: [String]) async throws -> String {
        let info = try await relay.createGroup(members: members.filter { $0 != account.name })
        let groupId = info.groupId.uuidString.lowercased()
        try store.transaction { store in
            _ = try store.groupConversation(groupId: groupId, title: title)
            try store.setGroupMembers(info.members, groupId: groupId)
        }
        try enqueueGroupUpdate(groupId: groupId, kind: .create, members: info.members, title: title)
        await flushOutbox()
        return groupId
    }

    /// Sends `text` to the group. Returns the message id.
    @discardableResult
    public func sendGroup(_ text: String, to groupId: String) async throws -> String {
        let groupId = groupId.lowercased()
        guard try store.groupMembers(groupId: groupId).contains(account.name) else { throw ClientError.notAGroupMember(groupId) }
        var data = DataMessage()
        data.messageID = UUID().uuidString.lowercased()
        data.timestamp = UInt64(Self.nowMillis())
        data.body = text
        data.group.groupID = groupId
        try enqueueGroupData(data, groupId: groupId, recordInHistory: true)
        await flushOutbox()
        return data.messageID
    }

    public func addMembers(_ members: [String], to groupId: String) async throws {
        let info = try await relay.addMembers(members, to: try uuid(groupId))
        try store.setGroupMembers(info.members, groupId: groupId.lowercased())
        let title = try store.groupConversation(groupId: groupId.lowercased()).title ?? ""
        try enqueueGroupUpdate(groupId: groupId.lowercased(), kind: .add, members: members, title: title)
        await flushOutbox()
    }

    /// Removes members; this device's sender key is replaced before the next group message.
    public func removeMembers(_ members: [String], from groupId: String) async throws {
        let id = groupId.lowercased()
        let info = try await relay.removeMembers(members, from: try uuid(id))
        try store.transaction { store in
            try store.setGroupMembers(info.members, groupId: id)
            try store.rotateOwnSenderKey(groupId: id, own: account.address)
        }
        emit(.groupChanged(groupId: id))
    }

    public func leaveGroup(_ groupId: String) async throws {
        let id = groupId.lowercased()
        _ = try await relay.removeMembers([account.name], from: try uuid(id))
        try store.transaction { store in
            try store.setGroupMembers([], groupId: id)
            try store.deleteSenderKeys(groupId: id)
        }
        emit(.groupChanged(groupId: id))
    }

    public func renameGroup(_ groupId: String, title: String) async throws {
        let id = groupId.lowercased()
        guard try store.groupMembers(groupId: id).contains(account.name) else { throw ClientError.notAGroupMember(id) }
        try store.setTitle(title, for: try store.groupConversation(groupId: id).id)
        try enqueueGroupUpdate(groupId: id, kind: .rename, members: [], title: title)
        await flushOutbox()
    }

    /// The groups this device knows, with their members.
    public func groups() throws -> [(conversation: Conversation, members: [String])] {
        try store.conversations().compactMap { conversation in
            guard case .group(let groupId) = conversation.kind else { return nil }
            return (conversation, try store.groupMembers(groupId: groupId))
        }
    }

    // MARK: internals

    private func uuid(_ groupId: String) throws -> UUID {
        guard let id = UUID(uuidString: groupId) else { throw ClientError.unknownGroup(groupId) }
        return id
    }

    private func enqueueGroupUpdate(groupId: String, kind: GroupUpdate.Kind, members: [String], title: String) throws {
        var data = DataMessage()
        data.messageID = UUID().uuidString.lowercased()
        data.timestamp = UInt64(Self.nowMillis())
        data.group.groupID = groupId
        data.groupUpdate.kind = kind
        data.groupUpdate.members = members
        data.groupUpdate.title = title
        try enqueueGroupData(data, groupId: groupId, recordInHistory: false)
    }

    func enqueueGroupData(_ data: DataMessage, groupId: String, recordInHistory: Bool) throws {
        var content = MessageContent()
        content.data = data
        let encoded = try ContentCodec.encode(content)
        let me = account
        try store.transaction { store in
            if recordInHistory {
                let conversation = try store.groupConversation(groupId: groupId)
                var statuses: [String: DeliveryStatus] = [:]
                for member in try store.groupMembers(groupId: groupId) where member != me.name { statuses[member] = .pending }
                _ = try store.insertMessage(
                    NewMessage(
                        conversation: conversation.id, sender: me.address, outgoing: true, sentAt: Int64(data.timestamp),
                        body: data.body, statuses: statuses, messageUid: data.messageID))
            }
            try store.enqueueOutgoing(
                .group(groupId: groupId), content: encoded, messageUid: recordInHistory ? data.messageID : nil,
                clientTimestamp: Int64(clamping: data.timestamp))
        }
    }

    /// Hands this device's sender key to every member device that lacks it, then sends one
    /// sender-key ciphertext for the whole group.
    func deliverGroup(groupId: String, content: [UInt8], clientTimestamp: Int64?) async throws {
        // A membership change while the key was being distributed rotates it: start over.
        for _ in 0..<3 {
            let delivered = try await recoveringFromRollback {
                try await deliverGroupOnce(groupId: groupId, content: content, clientTimestamp: clientTimestamp)
            }
            if delivered { return }
        }
        throw ClientError.deviceListUnsettled(account: "group \(groupId)")
    }

    /// Returns false when this device's sender key was rotated meanwhile (nothing was sent).
    private func deliverGroupOnce(groupId: String, content: [UInt8], clientTimestamp: Int64?) async throws -> Bool {
        let members = try store.groupMembers(groupId: groupId)
        guard members.contains(account.name), let groupUUID = UUID(uuidString: groupId) else {
            throw ClientError.notAGroupMember(groupId)
        }
        let name = SenderKeyName(groupId: groupId, sender: account.address)
        let distribution = try GroupCipher.createDistributionMessage(for: name, store: store, random: random)
        var wrapper = SenderKeyDistribution()
        wrapper.groupID = groupId
        wrapper.distribution = Data(distribution.serialized)
        var distributionContent = MessageContent()
        distributionContent.senderKeyDistribution = wrapper
        let encodedDistribution = try ContentCodec.encode(distributionContent)

        // Two queries for the whole group, not two per member: this runs before every group message.
        let holders = try store.senderKeyHolders(groupId: groupId)
        let devices = try store.contactDeviceIds()
        var needing: [String] = []
        for member in members {
            let known = (devices[member] ?? []).filter { member != account.name || $0 != account.deviceId }
            if member == account.name && known.isEmpty && devices[member] != nil { continue }  // no other own device
            if known.isEmpty || known.contains(where: { !holders.contains(ProtocolAddress(name: member, deviceId: $0)) }) {
                needing.append(member)
            }
        }
        if !needing.isEmpty {
            try await distribute(encodedDistribution, to: needing, groupId: groupId)
        }
        guard try store.loadSenderKey(for: name)?.keyIds.first == distribution.keyId else { return false }
        let message = try GroupCipher.encrypt(content, for: name, store: store, random: random)
        _ = try await relay.sendGroup(
            groupUUID,
            SendGroupMessageRequest(
                type: Self.senderKeyMessageType, content: Data(message.serialized), clientTimestamp: clientTimestamp ?? Self.nowMillis()))
        return true
    }

    private func distribute(_ content: [UInt8], to members: [String], groupId: String) async throws {
        try await withThrowingTaskGroup(of: (String, [UInt32]).self) { group in
            var pending = members.makeIterator()
            func startNext() {
                guard let member = pending.next() else { return }
                group.addTask {
                    do {
                        return (member, try await self.deliverDirect(to: member, content: content))
                    } catch ClientError.noDevices {
                        return (member, [])
                    }
                }
            }
            for _ in 0..<Self.maxConcurrentDistributions { startNext() }
            while let (member, devices) = try await group.next() {
                try store.addSenderKeyHolders(devices.map { ProtocolAddress(name: member, deviceId: $0) }, groupId: groupId)
                startNext()
            }
        }
    }

    /// A membership event from the relay: refresh the member list; a removal rotates this
    /// device's sender key; being removed forgets the group's keys.
    func applyGroupEvent(_ envelope: Envelope) async throws {
        let event: GroupEvent
        do { event = try WireCoding.decoder().decode(GroupEvent.self, from: envelope.content) } catch {
            try store.markProcessed(envelope: envelope.id)
            return
        }
        let groupId = event.groupId.uuidString.lowercased()
        var members: [String]
        if event.action == .membersRemoved && event.members.contains(account.name) {
            members = []
        } else {
            do {
                members = try await relay.group(event.groupId).members
            } catch RelayClientError.rejected(let status, _, _) where status == 403 || status == 404 {
                members = []
            }
        }
        let me = account
        try store.transaction { store in
            _ = try store.groupConversation(groupId: groupId)
            let before = Set(try store.groupMembers(groupId: groupId))
            try store.setGroupMembers(members, groupId: groupId)
            if members.isEmpty {
                try store.deleteSenderKeys(groupId: groupId)
                try store.rotateOwnSenderKey(groupId: groupId, own: me.address)
            } else if event.action == .membersRemoved, event.members.contains(where: before.contains) {
                // (A removal this device made itself was applied, and the key rotated, already.)
                try store.rotateOwnSenderKey(groupId: groupId, own: me.address)
            }
            try store.markProcessed(envelope: envelope.id)
        }
        emit(.groupChanged(groupId: groupId))
    }
}
