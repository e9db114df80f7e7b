import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// Repair (client.md §6): an envelope that does not decrypt leaves a placeholder in the history
/// and a decryption-error report to the device that sent it; that device, and only that one,
/// answers from its resend log: the content again, over a pairwise session, to the reporter's
/// account if it was a recipient when the content was sent, or why it cannot. The resent content
/// takes the placeholder's place.
extension ParleyDevice {
    /// How long this device keeps what it sent for resends, and how long a placeholder waits for
    /// one: a recipient may process an envelope as late as the relay keeps it (30 days), plus a
    /// day for clocks and the report's own way back.
    static let resendLogLifetime: Int64 = 31 * 24 * 3600 * 1000
    /// A placeholder whose resends still do not decrypt is reported at most this often, then
    /// given up (a session that keeps breaking would otherwise loop).
    static let maxRepairRequests = 3

    /// Records an envelope that did not decrypt and, for `repair`, asks its sender for it again:
    /// a decryption-error report naming the envelope (its client timestamp) and the device that
    /// sent it. For a 1:1 failure the session with that device is archived first (at most once
    /// a minute per device, so that messages still in flight over the old session do not reset
    /// it again), so the report goes out over a fresh session, as libsignal does.
    func recordUndecryptable(_ envelope: Envelope, sender: ProtocolAddress, reason: String, repair: Bool) throws -> ClientEvent {
        let timestamp = envelope.clientTimestamp ?? envelope.serverTimestamp
        if let existing = try store.placeholder(from: sender, sentAt: timestamp) {
            // A resend of it did not decrypt either.
            try store.markProcessed(envelope: envelope.id)
            guard repair, !existing.repairUnavailable, try store.countRepairRequest(existing.id) <= Self.maxRepairRequests else {
                try store.markPlaceholderUnavailable(existing.id)
                return .undecryptable(sender: sender, reason: reason)
            }
        } else {
            let conversation: Conversation
            if envelope.kind == .group, let groupId = envelope.groupId {
                conversation = try store.groupConversation(groupId: groupId.uuidString.lowercased())
            } else {
                if try store.contact(account: sender.name) == nil { try store.saveContact(account: sender.name, displayName: nil) }
                conversation = try store.directConversation(with: sender.name)
            }
            let inserted = try store.insertMessage(
                NewMessage(
                    conversation: conversation.id, serverId: envelope.id, sender: sender, outgoing: false,
                    sentAt: timestamp, receivedAt: Self.nowMillis(), body: nil, couldNotDecrypt: true))
            try store.markProcessed(envelope: envelope.id)
            guard repair else {
                // It decrypted but is not valid content: there is nothing a resend would change.
                try store.markPlaceholderUnavailable(inserted.id)
                return .undecryptable(sender: sender, reason: reason)
            }
            _ = try store.countRepairRequest(inserted.id)
        }
        var report = DecryptionErrorMessage()
        report.timestamp = UInt64(clamping: timestamp)
        report.deviceID = account.deviceId
        report.senderDeviceID = sender.deviceId
        if envelope.kind == .group, let groupId = envelope.groupId {
            report.groupID = groupId.uuidString.lowercased()
        } else {
            if envelope.type == 2, let message = try? SignalMessage(serialized: Array(envelope.content)) {
                report.ratchetKey = Data(message.senderRatchetKey.serialized)
            } else if envelope.type == 3, let message = try? PreKeySignalMessage(serialized: Array(envelope.content)) {
                report.ratchetKey = Data(message.message.senderRatchetKey.serialized)
            }
            let now = Self.nowMillis()
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
        // To the sender's account (the relay takes 1:1 messages for all its devices); only the
        // device it names answers. An own device is asked the same way.
        try enqueueControl(content, to: sender.name)
        return .undecryptable(sender: sender, reason: reason)
    }

    /// Stores `message`, in place of `placeholder` when there is one in the same conversation
    /// (the repaired message keeps the placeholder's position); a placeholder elsewhere (an own
    /// device's transcript lands in its conversation, not in the one the failure was recorded in)
    /// is removed and the message stored as usual.
    func storeRepairing(_ placeholder: StoredMessage?, with message: NewMessage, events: inout [ClientEvent]) throws -> MessageInsertResult {
        guard let placeholder else { return try store.insertMessage(message) }
        if placeholder.conversation == message.conversation {
            var replacement = message
            replacement.serverId = placeholder.serverId
            let result = try store.fillPlaceholder(placeholder.id, with: replacement)
            if case .duplicate = result { events.append(.removed(placeholder.id)) }
            return result
        }
        _ = try store.deleteMessage(id: placeholder.id)
        events.append(.removed(placeholder.id))
        return try store.insertMessage(message)
    }

    /// A repair that brought no history message (a receipt, a sender key, a title): the
    /// placeholder goes.
    func resolveWithoutMessage(_ placeholder: StoredMessage?) throws -> [ClientEvent] {
        guard let placeholder, try store.deleteMessage(id: placeholder.id) else { return [] }
        return [.removed(placeholder.id)]
    }

    /// A device could not decrypt something: if this device sent it, answer from the resend log.
    func handleDecryptionError(_ report: DecryptionErrorMessage, from reporter: ProtocolAddress) throws {
        guard reporter != account.address else { return }
        // Reports go to every device of this account; the one that sent the envelope answers. (A
        // report without the field comes from an older client: the device that logged it answers.)
        guard report.senderDeviceID == 0 || report.senderDeviceID == account.deviceId else { return }
        let timestamp = Int64(clamping: report.timestamp)
        if !report.groupID.isEmpty {
            // Its sender key here may be missing: hand it the current one before the next group
            // message (only if it is a member then).
            try store.removeSenderKeyHolder(reporter, groupId: report.groupID.lowercased())
            try learnDevice(reporter)
        }
        guard let entry = try store.resendLogEntry(timestamp: timestamp) else {
            if report.senderDeviceID != 0 { try answerUnavailable(.expired, timestamp: timestamp, to: reporter) }
            return
        }
        let ownDevice = reporter.name == account.name
        let resend: [UInt8]?
        let ownCopy: [UInt8]?
        switch entry.destination {
        case .direct(let peer):
            if let groupId = entry.groupId {
                // A sender key handed to a member: it gets the current key with the next message.
                try store.removeSenderKeyHolder(reporter, groupId: groupId)
            }
            guard ownDevice || peer == reporter.name else { return try answerUnavailable(.notARecipient, timestamp: timestamp, to: reporter) }
            resend = ownDevice ? (entry.ownContent ?? (peer == account.name ? entry.content : nil)) : entry.content
            ownCopy = entry.ownContent
        case .group(let groupId):
            // Only to an account that was a member of the version the relay accepted it for: a
            // member added later never reads what was said before it joined.
            let members = try entry.groupEpoch.flatMap { try store.groupMembers(groupId: groupId, epoch: $0) } ?? []
            guard ownDevice || members.contains(reporter.name) else {
                return try answerUnavailable(.notARecipient, timestamp: timestamp, to: reporter)
            }
            resend = entry.content
            ownCopy = entry.content
        }
        guard let resend else { return try answerUnavailable(.notContent, timestamp: timestamp, to: reporter) }
        // The same content under the same client timestamp, pairwise to the reporter's account
        // (and, as every 1:1 send, to this account's other devices, which already hold it).
        try store.enqueueOutgoing(
            .direct(account: reporter.name), content: resend, ownContent: ownDevice ? nil : ownCopy, clientTimestamp: timestamp)
    }

    private func answerUnavailable(_ reason: ResendUnavailable.Reason, timestamp: Int64, to reporter: ProtocolAddress) throws {
        var answer = ResendUnavailable()
        answer.timestamp = UInt64(clamping: timestamp)
        answer.reason = reason
        var content = MessageContent()
        content.resendUnavailable = answer
        try enqueueControl(content, to: reporter.name)
    }

    /// The sender will not resend: a placeholder for something that was not a message goes; one
    /// for a message it no longer has (or never sent to this account) is shown as lost.
    func handleResendUnavailable(_ answer: ResendUnavailable, from sender: ProtocolAddress) throws -> [ClientEvent] {
        guard let placeholder = try store.placeholder(from: sender, sentAt: Int64(clamping: answer.timestamp)) else { return [] }
        switch answer.reason {
        case .notContent:
            return try resolveWithoutMessage(placeholder)
        case .expired, .notARecipient, .UNRECOGNIZED:
            try store.markPlaceholderUnavailable(placeholder.id)
            return try store.message(id: placeholder.id).map { [.message($0)] } ?? []
        }
    }

    /// Forgets resend-log entries and member lists older than the resend log's lifetime, gives
    /// up placeholders that waited that long, and deletes the sender keys of groups this account
    /// left that long ago.
    func pruneRepairState(now: Int64) throws {
        let cutoff = now - Self.resendLogLifetime
        try store.pruneResendLog(before: cutoff)
        try store.pruneGroupVersions(before: cutoff)
        try store.abandonPlaceholders(receivedBefore: cutoff)
        try store.deleteSenderKeysOfFormerGroups(leftBefore: cutoff, member: account.name)
    }
}
