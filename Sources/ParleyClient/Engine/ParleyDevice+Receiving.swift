import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// Receiving: decrypt, store and mark processed in one transaction; acknowledge after commit.
extension ParleyDevice {
    /// A session with one device is reset (archived, a fresh one set up) at most this often (ms).
    static let sessionResetInterval: Int64 = 60_000

    /// The relay envelope `type` of a group (sender-key) message, as libsignal numbers it.
    public static let senderKeyMessageType = 7

    /// Processes one envelope. Returns true when it is durably handled and may be acknowledged;
    /// false when it must stay queued (a transient failure: it comes again on the next connection).
    public func process(_ envelope: Envelope) async -> Bool {
        do {
            if try store.isProcessed(envelope: envelope.id) { return true }
            switch envelope.kind {
            case .groupEvent:
                try await applyGroupEvent(envelope)
            case .direct, .group:
                try receive(envelope)
            }
            return true
        } catch {
            if Self.isTransient(error) { return false }
            // The device closed (its store with it) while the envelope was handled: it stays queued for the next
            // run, and the store's "closed connection" error says nothing wrong.
            if closed { return false }
            // A store failure is not the sender's fault: keep the envelope queued.
            if error is DeviceStoreError {
                logger.error("envelope \(envelope.id) kept queued, the store failed: \(error)")
                return false
            }
            logger.error("envelope \(envelope.id) dropped: \(error)")
            return true
        }
    }

    private enum Decrypted {
        case content(MessageContent)
        /// Decrypted, but the plaintext is not valid content: recorded, not repaired.
        case malformedContent
    }

    /// Decrypts and handles a ciphertext envelope; records failures and starts session repair.
    ///
    /// A PreKeySignalMessage under a changed identity key (`untrustedIdentity`) proves nothing by
    /// itself: its wrapper is not authenticated. For an unverified contact the message is decrypted
    /// once more, in the same kind of transaction, with the new key trusted for that attempt only
    /// (`CandidateIdentityStore`); the key is recorded, together with the session it produced, only
    /// if the message decrypts. Otherwise nothing changes: the recorded key, the session and its
    /// archived states stay as they were. A verified contact's change is refused either way.
    private func receive(_ envelope: Envelope) throws {
        let sender = ProtocolAddress(name: envelope.senderAccount, deviceId: envelope.senderDevice)
        var candidate: IdentityKey? = nil
        var discarded = 0
        while true {
            do {
                let events = try store.transaction { store -> [ClientEvent] in
                    // Another process on this store (a `listen` beside a `sync`) may have handled it meanwhile.
                    if try store.isProcessed(envelope: envelope.id) { return [] }
                    let decrypted = try decrypt(envelope, from: sender, trusting: candidate)
                    if let candidate {
                        // Proven (the message decrypted under it): the history says so before the message.
                        try store.recordIdentityChange(account: sender.name, newKey: candidate, refused: false, local: account.address)
                    }
                    try learnDevice(sender)
                    var events: [ClientEvent] = []
                    switch decrypted {
                    case .content(let content):
                        events = try handle(content, envelope: envelope, sender: sender)
                    case .malformedContent:
                        events = [try recordUndecryptable(envelope, sender: sender, reason: "malformed content", repair: false)]
                    }
                    try store.markProcessed(envelope: envelope.id)
                    return events
                }
                if candidate != nil { emit(.identityChanged(account: sender.name, accepted: true)) }
                for event in events { emit(event) }
                scheduleFlush()
                return
            } catch ProtocolError.untrustedIdentity(let address) where candidate == nil && envelope.kind == .direct {
                if try isVerified(address.name) {
                    emit(.identityChanged(account: address.name, accepted: false))
                    let offered = envelope.type == 3 ? (try? PreKeySignalMessage(serialized: Array(envelope.content)))?.identityKey : nil
                    let event = try store.transaction { store -> ClientEvent in
                        if let offered {
                            try store.recordIdentityChange(account: address.name, newKey: offered, refused: true, local: account.address)
                        }
                        return try recordUndecryptable(envelope, sender: sender, reason: "identity changed (verified contact)", repair: false)
                    }
                    emit(event)
                    return
                }
                guard envelope.type == 3, let key = (try? PreKeySignalMessage(serialized: Array(envelope.content)))?.identityKey else {
                    // A SignalMessage under a session whose identity is not the recorded one: it
                    // cannot introduce a key; only a PreKeySignalMessage can.
                    emit(try store.transaction { _ in
                        try recordUndecryptable(envelope, sender: sender, reason: "untrusted_identity", repair: false)
                    })
                    return
                }
                candidate = key
            } catch let error as ProtocolError where candidate != nil {
                // Nothing decrypted under the new key: it stays unrecorded and the session with the
                // recorded one is not touched (no repair either: it would archive that session).
                logger.info("a message under a changed identity of \(sender) did not decrypt: \(error.kind)")
                emit(try store.transaction { _ in
                    try recordUndecryptable(envelope, sender: sender, reason: "untrusted_identity", repair: false)
                })
                return
            } catch DeviceStoreError.rolledBack(let table, let key) where discarded < Self.maxRollbackDiscards {
                discarded += 1
                try discardRolledBack(table: table, key: key)
            } catch ProtocolError.duplicateMessage {
                // A redelivered envelope was skipped above (its id is recorded), so this is a new
                // envelope under a message key that was used already: its sender's state went back
                // (a store restored from a backup). Dropping it would lose the message for good;
                // repaired like any failure, it is resent over a fresh session.
                let event = try store.transaction { _ in try recordUndecryptable(envelope, sender: sender, reason: "duplicate", repair: true) }
                emit(event)
                scheduleFlush()
                return
            } catch let error as ProtocolError {
                let event = try store.transaction { _ in try recordUndecryptable(envelope, sender: sender, reason: error.kind, repair: true) }
                emit(event)
                scheduleFlush()
                return
            }
        }
    }

    /// A device that writes to us is a current device of its account: a later send (or sender-key
    /// distribution) includes it without waiting for the relay to say it is missing.
    func learnDevice(_ sender: ProtocolAddress) throws {
        guard sender != account.address else { return }
        if try store.contact(account: sender.name) == nil { try store.saveContact(account: sender.name, displayName: nil) }
        guard !(try store.contactDevices(account: sender.name).contains { $0.deviceId == sender.deviceId }) else { return }
        let registration = try store.loadSession(for: sender)?.remoteRegistrationId ?? 0
        try store.saveContactDevice(account: sender.name, deviceId: sender.deviceId, registrationId: registration)
    }

    /// Decrypts an envelope; `candidate` is a changed identity key of `sender` to trust for this
    /// attempt (recorded by the protocol only if the message decrypts).
    private func decrypt(_ envelope: Envelope, from sender: ProtocolAddress, trusting candidate: IdentityKey?) throws -> Decrypted {
        let bytes = Array(envelope.content)
        let plaintext: [UInt8]
        switch envelope.kind {
        case .group:
            guard let groupId = envelope.groupId, envelope.type == Self.senderKeyMessageType else {
                throw ProtocolError.malformed("group envelope")
            }
            let message = try SenderKeyMessage(serialized: bytes)
            plaintext = try GroupCipher.decrypt(
                message, from: SenderKeyName(groupId: groupId.uuidString.lowercased(), sender: sender), store: store)
        case .direct where envelope.type == 3:
            let message = try PreKeySignalMessage(serialized: bytes)
            if let candidate {
                let trusting = CandidateIdentityStore(base: store, address: sender, candidate: candidate)
                plaintext = try SessionCipher.decrypt(message, from: sender, store: trusting, policy: try store.sessionPolicy(), random: random)
            } else {
                plaintext = try SessionCipher.decrypt(message, from: sender, store: store, policy: try store.sessionPolicy(), random: random)
            }
        case .direct where envelope.type == 2:
            plaintext = try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: sender, store: store, random: random)
        default:
            throw ProtocolError.malformed("envelope type \(envelope.type)")
        }
        do { return .content(try ContentCodec.decode(plaintext)) } catch { return .malformedContent }
    }

    // MARK: content

    private func handle(_ content: MessageContent, envelope: Envelope, sender: ProtocolAddress) throws -> [ClientEvent] {
        let fromSelf = sender.name == account.name
        // The placeholder this envelope repairs, if an earlier copy of it did not decrypt here.
        let placeholder = try envelope.clientTimestamp.flatMap { try store.placeholder(from: sender, sentAt: $0) }
        switch content.body {
        case .data(let data):
            return try handleData(data, envelope: envelope, sender: sender, placeholder: placeholder)
        case .sync(let sync):
            guard fromSelf, sync.hasSent else { return try resolveWithoutMessage(placeholder) }
            return try recordSyncedSent(sync.sent, envelope: envelope, sender: sender, placeholder: placeholder)
        default:
            var events = try resolveWithoutMessage(placeholder)
            events += try handleControl(content, sender: sender)
            return events
        }
    }

    /// Content that is not a history message: receipts, typing, sender keys, repair traffic.
    private func handleControl(_ content: MessageContent, sender: ProtocolAddress) throws -> [ClientEvent] {
        let fromSelf = sender.name == account.name
        switch content.body {
        case .data, .sync:
            return []
        case .receipt(let receipt):
            if fromSelf {
                // The copy of a READ receipt another of this account's devices sent: the
                // messages it names were read there, so they are read here too.
                guard receipt.kind == .read else { return [] }
                for uid in receipt.messageIds {
                    if let id = try store.incomingMessage(uid: uid) { _ = try store.setStatus(.read, for: account.name, of: id) }
                }
                return []
            }
            let status: DeliveryStatus = receipt.kind == .read ? .read : .delivered
            // When the recipient device says it delivered or read it (its clock, end-to-end authenticated),
            // never later than now; without one, now.
            let now = Self.nowMillis()
            let at = receipt.timestamp > 0 ? min(Int64(clamping: receipt.timestamp), now) : now
            var events: [ClientEvent] = []
            for uid in receipt.messageIds {
                guard let id = try store.message(uid: uid, sender: account.name) else { continue }
                // Per device (client.md §4), then the account's status as before.
                try store.recordReceipt(status, from: sender, of: id, at: at)
                if try store.setStatus(status, for: sender.name, of: id) {
                    events.append(.status(messageUid: uid, recipient: sender.name, status: status))
                }
            }
            return events
        case .typing(let typing):
            return [.typing(account: sender.name, deviceId: sender.deviceId, groupId: typing.groupID.isEmpty ? nil : typing.groupID, started: typing.action == .started)]
        case .decryptionError(let report):
            try handleDecryptionError(report, from: sender)
            return []
        case .resendUnavailable(let answer):
            return try handleResendUnavailable(answer, from: sender)
        case .senderKeyDistribution(let distribution):
            let groupId = distribution.groupID.lowercased()
            guard UUID(uuidString: groupId) != nil else { throw ProtocolError.malformed("sender key group id") }
            // From a member, now or at a version this device remembers: a key handed out before a
            // removal that this device applied already is still needed for what was sent before it.
            guard try !store.knowsGroupMembers(groupId: groupId) || store.isOrWasGroupMember(sender.name, groupId: groupId) else {
                return []
            }
            let message = try SenderKeyDistributionMessage(serialized: Array(distribution.distribution))
            try GroupCipher.process(message, for: SenderKeyName(groupId: groupId, sender: sender), store: store)
            return []
        case .none:
            return []
        }
    }

    private func handleData(
        _ data: DataMessage, envelope: Envelope, sender: ProtocolAddress, placeholder: StoredMessage?
    ) throws -> [ClientEvent] {
        let fromSelf = sender.name == account.name
        let conversation: Conversation
        var events: [ClientEvent] = []
        var groupId: String? = nil
        if envelope.kind == .group {
            guard let id = envelope.groupId?.uuidString.lowercased(), data.group.groupID.lowercased() == id else {
                throw ProtocolError.malformed("group message without matching group context")
            }
            groupId = id
            conversation = try store.groupConversation(groupId: id)
        } else if data.hasGroup {
            // A group message resent over a pairwise session to the device that reported it (§6):
            // taken only in place of this device's placeholder for that very envelope, which shows
            // that the relay gave this device the original, as a member when it was sent.
            let id = data.group.groupID.lowercased()
            guard UUID(uuidString: id) != nil else { throw ProtocolError.malformed("group id") }
            guard let placeholder, let existing = try store.existingGroupConversation(groupId: id),
                placeholder.conversation == existing.id
            else { return [] }
            groupId = id
            conversation = existing
        } else {
            if try store.contact(account: sender.name) == nil { try store.saveContact(account: sender.name, displayName: nil) }
            conversation = try store.directConversation(with: sender.name)
        }
        var noticeText: String? = nil
        if let groupId, data.hasGroupUpdate {
            let update = data.groupUpdate
            // CREATE and RENAME set the title; ADD carries the current one for the new members.
            if update.kind == .create || update.kind == .rename || update.kind == .add, !update.title.isEmpty,
                conversation.title != update.title
            {
                try store.setTitle(update.title, for: conversation.id)
                events.append(.groupChanged(groupId: groupId))
            }
            if update.kind == .rename, !update.title.isEmpty { noticeText = GroupNotice.renamed(by: sender.name, to: update.title) }
        }
        guard !data.body.isEmpty || noticeText != nil else {
            return events + (try resolveWithoutMessage(placeholder))  // a title only: nothing to show
        }
        var statuses: [String: DeliveryStatus] = [:]
        if fromSelf, let groupId, noticeText == nil {
            for member in try store.groupMembers(groupId: groupId) where member != account.name { statuses[member] = .sent }
        }
        let message = NewMessage(
            conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: fromSelf,
            sentAt: Int64(clamping: data.timestamp), receivedAt: Self.nowMillis(), body: noticeText ?? data.body,
            statuses: statuses, messageUid: data.messageID.isEmpty ? nil : data.messageID, notice: noticeText != nil)
        let result = try storeRepairing(placeholder, with: message, events: &events)
        guard case .inserted(let id) = result else { return events }
        if !fromSelf, noticeText == nil, !data.messageID.isEmpty {
            var receipt = ReceiptMessage()
            receipt.kind = .delivered
            receipt.messageIds = [data.messageID]
            receipt.timestamp = UInt64(Self.nowMillis())
            var content = MessageContent()
            content.receipt = receipt
            try enqueueControl(content, to: sender.name)
        }
        if let stored = try store.message(id: id) { events.append(.message(stored)) }
        return events
    }

    /// A transcript of what another of this account's devices sent.
    private func recordSyncedSent(
        _ sent: SyncMessage.Sent, envelope: Envelope, sender: ProtocolAddress, placeholder: StoredMessage?
    ) throws -> [ClientEvent] {
        let data = sent.message
        let conversation: Conversation
        var statuses: [String: DeliveryStatus] = [:]
        if sent.destination.isEmpty {
            let groupId = data.group.groupID.lowercased()
            guard UUID(uuidString: groupId) != nil else { throw ProtocolError.malformed("sync without destination") }
            conversation = try store.groupConversation(groupId: groupId)
            for member in try store.groupMembers(groupId: groupId) where member != account.name { statuses[member] = .sent }
        } else {
            if try store.contact(account: sent.destination) == nil { try store.saveContact(account: sent.destination, displayName: nil) }
            conversation = try store.directConversation(with: sent.destination)
            statuses[sent.destination] = .sent
        }
        var events: [ClientEvent] = []
        let result = try storeRepairing(
            placeholder,
            with: NewMessage(
                conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: true,
                sentAt: Int64(clamping: data.timestamp), body: data.body, statuses: statuses,
                messageUid: data.messageID.isEmpty ? nil : data.messageID),
            events: &events)
        guard case .inserted(let id) = result, let stored = try store.message(id: id) else { return events }
        return events + [.message(stored)]
    }

    // MARK: read receipts

    /// Marks the incoming messages of a conversation as read and tells their senders (an
    /// end-to-end encrypted READ receipt per sender). Returns how many were newly read.
    @discardableResult
    public func markRead(_ conversation: ConversationID) async throws -> Int {
        let unread = try store.unreadIncoming(in: conversation, reader: account.name)
        guard !unread.isEmpty else { return 0 }
        try store.transaction { store in
            var bySender: [String: [String]] = [:]
            for message in unread {
                _ = try store.setStatus(.read, for: account.name, of: message.id)
                if let uid = message.messageUid, message.sender.name != account.name { bySender[message.sender.name, default: []].append(uid) }
            }
            for (sender, uids) in bySender.sorted(by: { $0.key < $1.key }) {
                var receipt = ReceiptMessage()
                receipt.kind = .read
                receipt.messageIds = uids
                receipt.timestamp = UInt64(Self.nowMillis())
                var content = MessageContent()
                content.receipt = receipt
                try enqueueControl(content, to: sender)
            }
        }
        await flushOutbox()
        return unread.count
    }

    func scheduleFlush() {
        Task { await self.flushOutbox() }
    }
}
