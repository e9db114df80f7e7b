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
            logger.error("envelope \(envelope.id) dropped: \(error)")
            // A store failure is not the sender's fault: keep the envelope queued.
            return !(error is DeviceStoreError)
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
                    let decrypted = try decrypt(envelope, from: sender, trusting: candidate)
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
                    let event = try store.transaction { _ in
                        try recordUndecryptable(envelope, sender: sender, reason: "identity changed (verified contact)", repair: false)
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
                try store.markProcessed(envelope: envelope.id)  // a replay: nothing new
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
                plaintext = try SessionCipher.decrypt(message, from: sender, store: trusting, random: random)
            } else {
                plaintext = try SessionCipher.decrypt(message, from: sender, store: store, random: random)
            }
        case .direct where envelope.type == 2:
            plaintext = try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: sender, store: store, random: random)
        default:
            throw ProtocolError.malformed("envelope type \(envelope.type)")
        }
        do { return .content(try ContentCodec.decode(plaintext)) } catch { return .malformedContent }
    }

    /// Records an envelope that did not decrypt and, for `repair`, archives the session with its
    /// sender and queues a decryption-error report over a fresh session, as libsignal does.
    private func recordUndecryptable(_ envelope: Envelope, sender: ProtocolAddress, reason: String, repair: Bool) throws -> ClientEvent {
        let conversation: Conversation
        if envelope.kind == .group, let groupId = envelope.groupId {
            conversation = try store.groupConversation(groupId: groupId.uuidString.lowercased())
        } else {
            if try store.contact(account: sender.name) == nil { try store.saveContact(account: sender.name, displayName: nil) }
            conversation = try store.directConversation(with: sender.name)
        }
        _ = try store.insertMessage(
            NewMessage(
                conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: false,
                sentAt: envelope.clientTimestamp, receivedAt: Self.nowMillis(), body: nil, couldNotDecrypt: true))
        try store.markProcessed(envelope: envelope.id)
        let now = Self.nowMillis()
        if repair, sender.name != account.name {
            // Every failed envelope is reported (so that its sender can resend it); the session
            // itself is reset at most once a minute per device, so that reports and messages
            // still in flight over the old session do not reset it again and again.
            var report = DecryptionErrorMessage()
            report.timestamp = UInt64(envelope.clientTimestamp ?? envelope.serverTimestamp)
            report.deviceID = account.deviceId
            if envelope.kind == .group, let groupId = envelope.groupId {
                report.groupID = groupId.uuidString.lowercased()
            } else {
                if envelope.type == 2, let message = try? SignalMessage(serialized: Array(envelope.content)) {
                    report.ratchetKey = Data(message.senderRatchetKey.serialized)
                } else if envelope.type == 3, let message = try? PreKeySignalMessage(serialized: Array(envelope.content)) {
                    report.ratchetKey = Data(message.message.senderRatchetKey.serialized)
                }
                if now - (lastRepair[sender] ?? 0) >= Self.sessionResetInterval {
                    lastRepair[sender] = now
                    if var record = try store.loadSession(for: sender), record.hasCurrentSession {
                        record.archiveCurrentState()  // the report goes out over a fresh session
                        try store.storeSession(record, for: sender)
                    }
                }
            }
            var content = MessageContent()
            content.decryptionError = report
            try enqueueControl(content, to: sender.name)
        }
        return .undecryptable(sender: sender, reason: reason)
    }

    // MARK: content

    private func handle(_ content: MessageContent, envelope: Envelope, sender: ProtocolAddress) throws -> [ClientEvent] {
        let fromSelf = sender.name == account.name
        switch content.body {
        case .data(let data):
            return try handleData(data, envelope: envelope, sender: sender)
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
            var events: [ClientEvent] = []
            for uid in receipt.messageIds {
                guard let id = try store.message(uid: uid, sender: account.name) else { continue }
                if try store.setStatus(status, for: sender.name, of: id) {
                    events.append(.status(messageUid: uid, recipient: sender.name, status: status))
                }
            }
            return events
        case .typing(let typing):
            return [.typing(account: sender.name, deviceId: sender.deviceId, groupId: typing.groupID.isEmpty ? nil : typing.groupID, started: typing.action == .started)]
        case .sync(let sync):
            guard fromSelf, sync.hasSent else { return [] }
            return try recordSyncedSent(sync.sent, envelope: envelope, sender: sender)
        case .decryptionError(let report):
            try handleDecryptionError(report, from: sender)
            return []
        case .senderKeyDistribution(let distribution):
            let groupId = distribution.groupID.lowercased()
            guard UUID(uuidString: groupId) != nil else { throw ProtocolError.malformed("sender key group id") }
            let members = try store.groupMembers(groupId: groupId)
            guard members.isEmpty || members.contains(sender.name) else { return [] }  // not from a member
            let message = try SenderKeyDistributionMessage(serialized: Array(distribution.distribution))
            try GroupCipher.process(message, for: SenderKeyName(groupId: groupId, sender: sender), store: store)
            return []
        case .none:
            return []
        }
    }

    private func handleData(_ data: DataMessage, envelope: Envelope, sender: ProtocolAddress) throws -> [ClientEvent] {
        let fromSelf = sender.name == account.name
        let conversation: Conversation
        var events: [ClientEvent] = []
        if envelope.kind == .group {
            guard let groupId = envelope.groupId?.uuidString.lowercased(), data.group.groupID.lowercased() == groupId else {
                throw ProtocolError.malformed("group message without matching group context")
            }
            conversation = try store.groupConversation(groupId: groupId)
            if data.hasGroupUpdate {
                let update = data.groupUpdate
                // CREATE and RENAME set the title; ADD carries the current one for the new members.
                if update.kind == .create || update.kind == .rename || update.kind == .add, !update.title.isEmpty {
                    try store.setTitle(update.title, for: conversation.id)
                }
                events.append(.groupChanged(groupId: groupId))
            }
        } else {
            guard !data.hasGroup else { throw ProtocolError.malformed("group context in a 1:1 message") }
            if try store.contact(account: sender.name) == nil { try store.saveContact(account: sender.name, displayName: nil) }
            conversation = try store.directConversation(with: sender.name)
        }
        guard !data.body.isEmpty || !data.hasGroupUpdate else { return events }  // a pure group update
        var statuses: [String: DeliveryStatus] = [:]
        if fromSelf, envelope.kind == .group {
            for member in try store.groupMembers(groupId: data.group.groupID.lowercased()) where member != account.name {
                statuses[member] = .sent
            }
        }
        let result = try store.insertMessage(
            NewMessage(
                conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: fromSelf,
                sentAt: Int64(clamping: data.timestamp), receivedAt: Self.nowMillis(), body: data.body,
                statuses: statuses, messageUid: data.messageID.isEmpty ? nil : data.messageID))
        guard case .inserted(let id) = result else { return events }
        if !fromSelf, !data.messageID.isEmpty {
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
    private func recordSyncedSent(_ sent: SyncMessage.Sent, envelope: Envelope, sender: ProtocolAddress) throws -> [ClientEvent] {
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
        let result = try store.insertMessage(
            NewMessage(
                conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: true,
                sentAt: Int64(clamping: data.timestamp), body: data.body, statuses: statuses,
                messageUid: data.messageID.isEmpty ? nil : data.messageID))
        guard case .inserted(let id) = result, let stored = try store.message(id: id) else { return [] }
        return [.message(stored)]
    }

    /// A peer could not decrypt something this device sent: resend it (its report arrived over a
    /// fresh session already; for a group message, the sender key goes to that device again).
    private func handleDecryptionError(_ report: DecryptionErrorMessage, from sender: ProtocolAddress) throws {
        guard sender.name != account.name else { return }
        let sentAt = Int64(clamping: report.timestamp)
        let groupId = report.groupID.isEmpty ? nil : report.groupID.lowercased()
        if let groupId {
            try store.removeSenderKeyHolder(ProtocolAddress(name: sender.name, deviceId: report.deviceID), groupId: groupId)
            try learnDevice(sender)
        }
        let conversation = try groupId.map { try store.groupConversation(groupId: $0) } ?? store.directConversation(with: sender.name)
        guard let message = try store.outgoingMessage(in: conversation.id, sentAt: sentAt), let body = message.body,
              let uid = message.messageUid
        else { return }
        var data = DataMessage()
        data.messageID = uid  // the same id: whoever already has it drops the copy
        data.timestamp = UInt64(sentAt)
        data.body = body
        if let groupId {
            data.group.groupID = groupId
            try enqueueGroupData(data, groupId: groupId, recordInHistory: false)
        } else {
            try enqueueDirect(data, to: sender.name, recordInHistory: false)
        }
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
