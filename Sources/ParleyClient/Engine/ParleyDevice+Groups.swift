import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// Groups: membership at the relay, content through sender keys. Each device has its own
/// sender key per group, handed to every member device over pairwise sessions before its first
/// use there; a removal rotates it, so removed members cannot read what follows.
///
/// Membership is versioned (`GroupInfo.epoch`). A device applies the relay's membership events
/// in queue order (each carries the members after the change), so when it processes a group
/// message its view is the membership the relay sent that message under; answers of the relay
/// (create, add, remove, a fresh `GET`) may move the view forward, never back. A group message
/// names the version its sender handed its key to, and the relay refuses it when the group has
/// changed since: the members who receive a message are exactly the members of the version it
/// was sent for, which the resend log records.
extension ParleyDevice {
    /// How often one group message is re-planned because the group changed under it before it
    /// stays queued for the next flush (`ClientError.groupUnsettled`).
    static let maxGroupSendRounds = 5

    /// Creates a group with `members` (account names) and announces its title to them. This
    /// account is its first admin.
    public func createGroup(title: String, members: [String]) async throws -> String {
        let info = try await relay.createGroup(members: members.filter { $0 != account.name })
        let groupId = info.groupId.uuidString.lowercased()
        try store.transaction { store in
            _ = try store.groupConversation(groupId: groupId, title: title)
            try adoptGroupState(info, store: store)
        }
        try enqueueGroupUpdate(groupId: groupId, kind: .create, members: info.members, title: title)
        await flushOutbox()
        return groupId
    }

    /// Sends `text` to the group. Returns the message id.
    @discardableResult
    public func sendGroup(_ text: String, to groupId: String) async throws -> String {
        let groupId = groupId.lowercased()
        try Self.checkText(text)
        guard try store.groupMembers(groupId: groupId).contains(account.name) else { throw ClientError.notAGroupMember(groupId) }
        var data = DataMessage()
        data.messageID = UUID().uuidString.lowercased()
        data.timestamp = UInt64(try store.nextSendTimestamps(now: Self.nowMillis()))
        data.body = text
        data.group.groupID = groupId
        try enqueueGroupData(data, groupId: groupId, recordInHistory: true)
        await flushOutbox()
        return data.messageID
    }

    /// Adds members (admins only) and hands them the title.
    public func addMembers(_ members: [String], to groupId: String) async throws {
        let id = groupId.lowercased()
        let info = try await relay.addMembers(members, to: try uuid(id))
        try store.transaction { store in try adoptGroupState(info, store: store) }
        let title = try store.groupConversation(groupId: id).title ?? ""
        try enqueueGroupUpdate(groupId: id, kind: .add, members: members, title: title)
        await flushOutbox()
    }

    /// Removes members (admins only); this device's sender key is replaced before the next group
    /// message.
    public func removeMembers(_ members: [String], from groupId: String) async throws {
        let id = groupId.lowercased()
        let info = try await relay.removeMembers(members, from: try uuid(id))
        try store.transaction { store in try adoptGroupState(info, store: store) }
        emit(.groupChanged(groupId: id))
    }

    /// Makes members admins (admins only).
    public func makeAdmins(_ members: [String], in groupId: String) async throws {
        let id = groupId.lowercased()
        let info = try await relay.addAdmins(members, in: try uuid(id))
        try store.transaction { store in try adoptGroupState(info, store: store) }
        emit(.groupChanged(groupId: id))
    }

    /// Leaves the group (anyone may). The other members' sender keys stay for the resend log's
    /// lifetime: what they sent while this account was a member may still be queued for it.
    public func leaveGroup(_ groupId: String) async throws {
        let id = groupId.lowercased()
        let info = try await relay.removeMembers([account.name], from: try uuid(id))
        try store.transaction { store in try adoptGroupState(info, store: store) }
        emit(.groupChanged(groupId: id))
    }

    /// Sets a new title and tells the members (end to end).
    public func renameGroup(_ groupId: String, title: String) async throws {
        let id = groupId.lowercased()
        guard try store.groupMembers(groupId: id).contains(account.name) else { throw ClientError.notAGroupMember(id) }
        let data = try groupUpdate(groupId: id, kind: .rename, members: [], title: title)
        let me = account
        try store.transaction { store in
            let conversation = try store.groupConversation(groupId: id)
            try store.setTitle(title, for: conversation.id)
            _ = try store.insertMessage(
                NewMessage(
                    conversation: conversation.id, sender: me.address, outgoing: true, sentAt: Int64(data.timestamp),
                    body: GroupNotice.renamed(by: me.name, to: title), messageUid: data.messageID, notice: true))
            try enqueueGroupData(data, groupId: id, recordInHistory: false)
        }
        emit(.groupChanged(groupId: id))
        await flushOutbox()
    }

    /// The groups this device knows, with their members.
    public func groups() throws -> [(conversation: Conversation, members: [String])] {
        try store.conversations().compactMap { conversation in
            guard case .group(let groupId) = conversation.kind else { return nil }
            return (conversation, try store.groupMembers(groupId: groupId))
        }
    }

    /// This device's view of a group: version, members, admins.
    public func groupView(_ groupId: String) throws -> GroupView { try store.groupView(groupId: groupId.lowercased()) }

    // MARK: internals

    private func uuid(_ groupId: String) throws -> UUID {
        guard let id = UUID(uuidString: groupId) else { throw ClientError.unknownGroup(groupId) }
        return id
    }

    /// Moves this device's view of a group to `info` if it is newer. When members left the view,
    /// this device's sender key is rotated: its next message goes out under a key only the
    /// remaining members get. So it is when the view jumps over versions it never saw: a member
    /// may have left (forgetting the group's keys) and come back in between.
    func adoptGroupState(_ info: GroupInfo, store: DeviceStore) throws {
        try adoptGroupState(
            groupId: info.groupId.uuidString.lowercased(), epoch: info.epoch, members: info.members, admins: info.admins, store: store)
    }

    @discardableResult
    func adoptGroupState(groupId: String, epoch: Int64, members: [String], admins: [String], store: DeviceStore) throws -> GroupViewChange {
        let change = try store.applyGroupState(groupId: groupId, epoch: epoch, members: members, admins: admins)
        let skipped = change.previousEpoch > 0 && epoch > change.previousEpoch + 1
        if change.applied && (!change.removed.isEmpty || skipped) {
            try store.rotateOwnSenderKey(groupId: groupId, own: account.address)
        }
        return change
    }

    /// Asks the relay for the group's current state and adopts it. Throws `notAGroupMember` when
    /// the relay says this account is not (or no longer) a member.
    @discardableResult
    func refreshGroup(_ groupId: String) async throws -> GroupView {
        let info: GroupInfo
        do {
            info = try await relay.group(try uuid(groupId))
        } catch RelayClientError.rejected(let status, _, _) where status == 403 || status == 404 {
            throw ClientError.notAGroupMember(groupId)
        }
        try store.transaction { store in try adoptGroupState(info, store: store) }
        return try store.groupView(groupId: groupId)
    }

    private func groupUpdate(groupId: String, kind: GroupUpdate.Kind, members: [String], title: String) throws -> DataMessage {
        var data = DataMessage()
        data.messageID = UUID().uuidString.lowercased()
        data.timestamp = UInt64(try store.nextSendTimestamps(now: Self.nowMillis()))
        data.group.groupID = groupId
        data.groupUpdate.kind = kind
        data.groupUpdate.members = members
        data.groupUpdate.title = title
        return data
    }

    private func enqueueGroupUpdate(groupId: String, kind: GroupUpdate.Kind, members: [String], title: String) throws {
        try enqueueGroupData(try groupUpdate(groupId: groupId, kind: kind, members: members, title: title), groupId: groupId, recordInHistory: false)
    }

    func enqueueGroupData(_ data: DataMessage, groupId: String, recordInHistory: Bool) throws {
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
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
    /// sender-key ciphertext for the whole group, naming the group version it was planned for.
    func deliverGroup(groupId: String, content: [UInt8], clientTimestamp: Int64?) async throws {
        let timestamp = try clientTimestamp ?? store.nextSendTimestamps(now: Self.nowMillis())
        try store.logSend(timestamp: timestamp, destination: .group(groupId: groupId), groupId: groupId, content: content)
        var refreshed = false
        for _ in 0..<Self.maxGroupSendRounds {
            // A key row refused as rolled back is discarded and the round runs again (ParleyDevice+Rollback).
            let delivered = try await recoveringFromRollback {
                try await deliverGroupOnce(groupId: groupId, content: content, timestamp: timestamp, refreshed: &refreshed)
            }
            if delivered { return }
        }
        throw ClientError.groupUnsettled(groupId)
    }

    /// Returns false when the group or this device's sender key changed meanwhile (nothing was
    /// stored at the relay): plan again.
    private func deliverGroupOnce(groupId: String, content: [UInt8], timestamp: Int64, refreshed: inout Bool) async throws -> Bool {
        var view = try store.groupView(groupId: groupId)
        if !view.members.contains(account.name) || view.epoch == 0 {
            // Not a member as far as this device knows (or a group known only from before
            // versions): the relay decides.
            guard !refreshed else { throw ClientError.notAGroupMember(groupId) }
            refreshed = true
            view = try await refreshGroup(groupId)
            guard view.members.contains(account.name) else { throw ClientError.notAGroupMember(groupId) }
        }
        guard let groupUUID = UUID(uuidString: groupId) else { throw ClientError.unknownGroup(groupId) }
        let name = SenderKeyName(groupId: groupId, sender: account.address)
        // New sender keys in libsignal's current layout, the group's UUID as distribution id; a key made
        // before (old layout) is used until it is rotated.
        let distribution = try GroupCipher.createDistributionMessage(for: name, distributionId: groupUUID, store: store, random: random)

        let needing = try membersLackingKey(groupId: groupId, members: view.members)
        if !needing.isEmpty {
            // The key goes only to members of the group as the relay has it now: a member removed
            // meanwhile must not get it, one added meanwhile must.
            if !refreshed {
                refreshed = true
                if try await refreshGroup(groupId).epoch != view.epoch { return false }
            }
            var wrapper = SenderKeyDistribution()
            wrapper.groupID = groupId
            wrapper.distribution = Data(distribution.serialized)
            var distributionContent = MessageContent()
            distributionContent.senderKeyDistribution = wrapper
            try await distribute(try ContentCodec.encode(distributionContent), to: needing, groupId: groupId, key: distribution.keyId)
        }
        guard try store.loadSenderKey(for: name)?.keyIds.first == distribution.keyId else { return false }
        let message = try GroupCipher.encrypt(content, for: name, store: store, random: random)
        try store.setResendLogEpoch(view.epoch, timestamp: timestamp)
        do {
            _ = try await relay.sendGroup(
                groupUUID,
                SendGroupMessageRequest(
                    type: Self.senderKeyMessageType, content: Data(message.serialized), clientTimestamp: timestamp, epoch: view.epoch))
            return true
        } catch RelayClientError.rejected(409, .groupChanged?, _) {
            refreshed = true
            try await refreshGroup(groupId)
            return false
        }
    }

    /// The members with a device (own other devices included) that does not hold this device's
    /// current sender key. Two queries for the whole group: this runs before every group message.
    private func membersLackingKey(groupId: String, members: [String]) throws -> [String] {
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
        return needing
    }

    /// Hands the distribution of sender key `key` to `members`. A device is recorded as holding
    /// this device's key only while `key` is still the current one: if the key rotated meanwhile
    /// (a removal processed while the distribution was on its way), the holders of the new key
    /// start empty.
    private func distribute(_ content: [UInt8], to members: [String], groupId: String, key: UInt32) async throws {
        let name = SenderKeyName(groupId: groupId, sender: account.address)
        // One client timestamp per pairwise send, logged (without the key) so that a report about
        // one of them is answered.
        let first = try store.nextSendTimestamps(count: members.count, now: Self.nowMillis())
        let planned = members.enumerated().map { (timestamp: first + Int64($0.offset), member: $0.element) }
        try store.logSends(
            planned.map { (timestamp: $0.timestamp, destination: OutboxDestination.direct(account: $0.member), groupId: Optional(groupId)) })
        // Every bundle the hand-out needs, in one request per `maxBundleBatchAccounts` members (a 500-member
        // group: one), instead of one or two requests per member.
        let bundles = try await prefetchBundles(for: members + [account.name])
        let own = bundles[account.name] ?? []
        try await withThrowingTaskGroup(of: (String, [UInt32]).self) { group in
            var pending = planned.makeIterator()
            func startNext() {
                guard let next = pending.next() else { return }
                // (Not a literal: the member may be this account itself, for its other devices.)
                var prefetched: PrefetchedBundles = [account.name: own]
                prefetched[next.member] = bundles[next.member] ?? []
                group.addTask {
                    do {
                        return (
                            next.member,
                            try await self.deliverDirect(
                                to: next.member, content: content, clientTimestamp: next.timestamp, prefetched: prefetched)
                        )
                    } catch ClientError.noDevices {
                        return (next.member, [])
                    }
                }
            }
            for _ in 0..<Self.maxConcurrentDistributions { startNext() }
            while let (member, devices) = try await group.next() {
                if try store.loadSenderKey(for: name)?.keyIds.first == key {
                    try store.addSenderKeyHolders(devices.map { ProtocolAddress(name: member, deviceId: $0) }, groupId: groupId)
                }
                startNext()
            }
        }
    }

    /// A membership event from the relay, applied in queue order: the view moves to the version
    /// the event produced (unless it is there already), a removal rotates this device's sender
    /// key, and the history gets the change as a sentence.
    func applyGroupEvent(_ envelope: Envelope) async throws {
        let event: GroupEvent
        do { event = try WireCoding.decoder().decode(GroupEvent.self, from: envelope.content) } catch {
            try store.markProcessed(envelope: envelope.id)
            return
        }
        let groupId = event.groupId.uuidString.lowercased()
        var state: (epoch: Int64, members: [String], admins: [String])
        if let epoch = event.epoch, let members = event.currentMembers {
            state = (epoch, members, event.admins ?? [])
        } else {
            // Queued by a relay from before versions: the current state is the best there is.
            do {
                let info = try await relay.group(event.groupId)
                state = (info.epoch, info.members, info.admins)
            } catch RelayClientError.rejected(let status, _, _) where status == 403 || status == 404 {
                state = (0, [], [])
            }
        }
        let me = account
        let notice = try store.transaction { store -> StoredMessage? in
            if try store.isProcessed(envelope: envelope.id) { return nil }
            let conversation = try store.groupConversation(groupId: groupId)
            if state.epoch > 0 {
                try adoptGroupState(groupId: groupId, epoch: state.epoch, members: state.members, admins: state.admins, store: store)
            } else if event.action == .membersRemoved && event.members.contains(me.name) {
                try store.setGroupMembers([], groupId: groupId)
                try store.rotateOwnSenderKey(groupId: groupId, own: me.address)
            }
            let result = try store.insertMessage(
                NewMessage(
                    conversation: conversation.id, serverId: envelope.id,
                    sender: ProtocolAddress(name: event.actor, deviceId: envelope.senderDevice), outgoing: event.actor == me.name,
                    sentAt: envelope.serverTimestamp, receivedAt: Self.nowMillis(), body: GroupNotice.sentence(for: event), notice: true))
            try store.markProcessed(envelope: envelope.id)
            guard case .inserted(let id) = result else { return nil }
            return try store.message(id: id)
        }
        if let notice { emit(.message(notice)) }
        emit(.groupChanged(groupId: groupId))
    }
}
