import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// Sending: the durable outbox, per-device fan-out with automatic repair of the device list.
extension ParleyDevice {
    /// How often one outbox entry is tried before it is given up (transient failures excluded:
    /// those stay queued until the relay answers).
    static let maxPermanentAttempts = 1
    /// How often a send is repaired (mismatched/stale devices) before giving up for now.
    static let maxRepairRounds = 5
    /// The longest message text, in UTF-8 bytes: 64 KiB. Parley has no attachments, so a text travels inline;
    /// padded, framed and encrypted it stays far inside the relay's 256 KiB per-ciphertext cap
    /// (`RelayLimits.maxCiphertextBytes`), and a history row or a search-index entry stays small. (Signal's
    /// clients move text beyond a few KiB into an attachment; 64 KiB is its long-text limit.)
    public static let maxMessageTextBytes = 64 * 1024

    /// Refuses text that is empty (or only white space) or longer than `maxMessageTextBytes`.
    static func checkText(_ text: String) throws {
        guard !text.allSatisfy(\.isWhitespace) else { throw ClientError.emptyMessage }
        let bytes = text.utf8.count
        guard bytes <= maxMessageTextBytes else { throw ClientError.messageTooLong(bytes: bytes, limit: maxMessageTextBytes) }
    }

    // MARK: public sending API

    /// Sends `text` to every device of `peer` (and a transcript to this account's other
    /// devices). The message is in the history and the outbox when this returns its id; it is
    /// sent now if the relay is reachable, else on the next `flushOutbox`.
    @discardableResult
    public func send(_ text: String, to peer: String) async throws -> String {
        guard !peer.isEmpty else { throw ClientError.invalidArgument("empty recipient") }
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
        try Self.checkText(text)
        try await checkRecipientExists(peer)
        let uid = UUID().uuidString.lowercased()
        var data = DataMessage()
        data.messageID = uid
        data.timestamp = UInt64(try store.nextSendTimestamps(now: Self.nowMillis()))
        data.body = text
        try enqueueDirect(data, to: peer)
        await flushOutbox()
        return uid
    }

    /// A recipient this device has never seen (no contact row) is looked up at the relay first: an account the
    /// relay does not know (no devices) is refused before anything is stored, so a typo does not become a
    /// contact and a message that can only fail. If the relay cannot be reached the message is queued as any
    /// other (the lookup happens with the send); contacts are not looked up again.
    func checkRecipientExists(_ peer: String) async throws {
        guard peer != account.name, try store.contact(account: peer) == nil else { return }
        let listed: [DeviceInfo]
        do { listed = try await relay.devices(of: peer) } catch RelayClientError.rejected(404, _, _) {
            throw ClientError.unknownAccount(peer)
        } catch RelayClientError.deviceRemoved {
            // Found out here first: this device can send nothing (see `deliver`).
            removedFromAccount = true
            throw ClientError.deviceRemoved
        } catch {
            if Self.isTransient(error) { return }
            throw error
        }
        if listed.isEmpty { throw ClientError.unknownAccount(peer) }
    }

    /// Writes a 1:1 DataMessage to the history and the outbox in one transaction.
    func enqueueDirect(_ data: DataMessage, to peer: String, recordInHistory: Bool = true) throws {
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
        var content = MessageContent()
        content.data = data
        var sent = SyncMessage.Sent()
        sent.destination = peer
        sent.message = data
        var sync = SyncMessage()
        sync.sent = sent
        var own = MessageContent()
        own.sync = sync
        let encoded = try ContentCodec.encode(content)
        let ownEncoded = try ContentCodec.encode(own)
        let me = account.address
        try store.transaction { store in
            if recordInHistory {
                if try store.contact(account: peer) == nil { try store.saveContact(account: peer, displayName: nil) }
                let conversation = try store.directConversation(with: peer)
                _ = try store.insertMessage(
                    NewMessage(
                        conversation: conversation.id, sender: me, outgoing: true, sentAt: Int64(data.timestamp), body: data.body,
                        statuses: [peer: .pending], messageUid: data.messageID))
            }
            try store.enqueueOutgoing(
                .direct(account: peer), content: encoded, ownContent: ownEncoded, messageUid: recordInHistory ? data.messageID : nil,
                clientTimestamp: Int64(clamping: data.timestamp))
        }
    }

    /// Queues non-history content (receipts, decryption-error reports and their answers) for every
    /// device of `peer`, under a client timestamp of its own (a report about it names it).
    func enqueueControl(_ content: MessageContent, to peer: String) throws {
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
        let timestamp = try store.nextSendTimestamps(now: Self.nowMillis())
        try store.enqueueOutgoing(.direct(account: peer), content: try ContentCodec.encode(content), clientTimestamp: timestamp)
    }

    // MARK: outbox

    /// Sends everything in the outbox, oldest first. Stops at the first entry that fails for a
    /// transient reason (relay unreachable, rate limited): it and those after it stay queued.
    /// Entries refused for good are removed, their messages marked `failed`.
    ///
    /// A call while a flush is running does not return at once: it asks that flush to go round once more
    /// (for entries queued meanwhile) and waits for it, so that whoever awaits `flushOutbox` (`syncOnce`
    /// before it disconnects, `send`) knows the outbox was tried up to its own entries.
    public func flushOutbox() async {
        // A removed device sends nothing: its outbox stays as it is (the relay would refuse every entry).
        if closed || removedFromAccount { return }
        if flushing {
            flushAgain = true
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in flushWaiters.append(continuation) }
            return
        }
        flushing = true
        defer {
            flushing = false
            let waiters = flushWaiters
            flushWaiters = []
            for waiter in waiters { waiter.resume() }
        }
        repeat {
            flushAgain = false
            while true {
                let entries: [OutboxEntry]
                do { entries = try store.outboxEntries(limit: 50) } catch {
                    logger.error("outbox unreadable: \(error)")
                    return
                }
                if entries.isEmpty {
                    deferral = nil
                    break
                }
                for entry in entries {
                    guard !closed, await deliver(entry) else { return }
                }
            }
        } while flushAgain
    }

    /// Sends one entry. Returns false when it stays queued (a transient failure).
    private func deliver(_ entry: OutboxEntry) async -> Bool {
        var recipients: [String] = []
        var devicesSentTo: [UInt32] = []
        do {
            recipients = try recipientsOf(entry)  // (a group's members as of this send)
            switch entry.destination {
            case .direct(let peer):
                let timestamp = try entry.clientTimestamp ?? store.nextSendTimestamps(now: Self.nowMillis())
                try logDirectSend(entry, to: peer, timestamp: timestamp)
                devicesSentTo = try await deliverDirect(
                    to: peer, content: entry.content, ownContent: entry.ownContent, clientTimestamp: timestamp)
            case .group(let groupId):
                try await deliverGroup(groupId: groupId, content: entry.content, clientTimestamp: entry.clientTimestamp)
            }
        } catch RelayClientError.deviceRemoved {
            // The relay no longer accepts this device: nothing can be sent, so nothing is given up either.
            removedFromAccount = true
            try? store.recordOutboxFailure(id: entry.id, reason: "\(RelayClientError.deviceRemoved)")
            logger.warning("send stopped: \(RelayClientError.deviceRemoved)")
            return false
        } catch {
            if Self.isTransient(error) {
                try? store.recordOutboxFailure(id: entry.id, reason: "\(error)")
                deferral = SendDeferral.of(error)
                logger.info("send deferred: \(error)")
                return false
            }
            // Refused for good: give the entry up and say so.
            do {
                try store.transaction { store in
                    try store.removeOutgoing(id: entry.id)
                    if let uid = entry.messageUid, let id = try store.message(uid: uid, sender: account.name) {
                        for recipient in recipients { try store.setStatus(.failed, for: recipient, of: id) }
                    }
                }
            } catch {
                logger.error("outbox update failed: \(error)")
                return false
            }
            emit(.sendFailed(destination: Self.describe(entry.destination), reason: "\(error)"))
            if let uid = entry.messageUid {
                for recipient in recipients { emit(.status(messageUid: uid, recipient: recipient, status: .failed)) }
            }
            return true
        }
        do {
            try store.transaction { store in
                try store.removeOutgoing(id: entry.id)
                if let uid = entry.messageUid, let id = try store.message(uid: uid, sender: account.name) {
                    let now = Self.nowMillis()
                    for recipient in recipients {
                        try store.setStatus(.sent, for: recipient, of: id)
                        // 1:1: the devices it was encrypted for, each to be delivered to; a group's member
                        // devices are known only from their receipts (`devicesSentTo` stays empty).
                        try store.recordSent(id, to: recipient, devices: devicesSentTo, at: now)
                    }
                }
            }
        } catch {
            logger.error("outbox update failed: \(error)")
            return false
        }
        if let uid = entry.messageUid {
            for recipient in recipients { emit(.status(messageUid: uid, recipient: recipient, status: .sent)) }
        }
        return true
    }

    /// Records a 1:1 send in the resend log with its content (and transcript). A sender key is
    /// logged by `distribute` without its content: a device that lost one gets the current key
    /// with the next group message instead.
    private func logDirectSend(_ entry: OutboxEntry, to peer: String, timestamp: Int64) throws {
        let resendable: Bool
        switch (try? ContentCodec.decode(entry.content))?.body {
        case .senderKeyDistribution, .typing, .none: resendable = false
        case .data, .receipt, .sync, .decryptionError, .resendUnavailable: resendable = true
        }
        try store.logSend(
            timestamp: timestamp, destination: .direct(account: peer), content: resendable ? entry.content : nil,
            ownContent: resendable ? entry.ownContent : nil)
    }

    private func recipientsOf(_ entry: OutboxEntry) throws -> [String] {
        switch entry.destination {
        case .direct(let peer): return [peer]
        case .group(let groupId): return try store.groupMembers(groupId: groupId).filter { $0 != account.name }
        }
    }

    static func describe(_ destination: OutboxDestination) -> String {
        switch destination {
        case .direct(let peer): return peer
        case .group(let groupId): return "group:\(groupId)"
        }
    }

    /// Network failures, timeouts, rate limits, full queues and relay errors are worth retrying.
    static func isTransient(_ error: any Error) -> Bool {
        if let error = error as? RelayClientError { return error.isTransient }
        if case ClientError.groupUnsettled = error { return true }
        if error is ClientError || error is ProtocolError || error is DeviceStoreError || error is ContentError || error is FanOutError {
            return false
        }
        return true  // transport errors (connection refused, timeouts, TLS)
    }

    // MARK: 1:1 fan-out

    /// Encrypts `content` for every device of `peer` and `ownContent` (default: the same) for
    /// this account's other devices, and sends it. Repairs sessions and device lists when the
    /// relay refuses the device set. Returns the peer devices it was sent to.
    ///
    /// `prefetched`: bundles fetched ahead for a whole fan-out (`prefetchBundles`); without them, the bundles
    /// this send needs (peer and own other devices) come in one batched request.
    @discardableResult
    func deliverDirect(
        to peer: String, content: [UInt8], ownContent: [UInt8]? = nil, clientTimestamp: Int64? = nil,
        prefetched: PrefetchedBundles? = nil
    ) async throws -> [UInt32] {
        let isSelf = peer == account.name
        var prefetched = prefetched
        for _ in 0..<Self.maxRepairRounds {
            // After a repair the devices changed: bundles fetched before it may be of the old ones.
            let bundles: PrefetchedBundles
            if let given = prefetched {
                bundles = given
                prefetched = nil
            } else {
                bundles = try await prefetchBundles(for: isSelf ? [peer] : [peer, account.name])
            }
            var peerDevices = try await devices(of: peer)
            if isSelf { peerDevices.removeAll { $0 == account.deviceId } }
            let ownDevices = isSelf ? [] : try await devices(of: account.name).filter { $0 != account.deviceId }
            if peerDevices.isEmpty && ownDevices.isEmpty {
                if isSelf { return [] }  // nothing to sync to
                throw ClientError.noDevices(account: peer)
            }
            do {
                // A device of the cached lists that the relay has no bundle for (removed, or a link never
                // finished) comes out of `encrypt` as `mismatchedDevices` with it as extra: repaired below.
                let peerMessages = try await encrypt(content, for: peer, devices: peerDevices, prefetched: bundles[peer] ?? [])
                let ownMessages = try await encrypt(
                    ownContent ?? content, for: account.name, devices: ownDevices, prefetched: bundles[account.name] ?? [])
                _ = try await relay.send(
                    to: peer,
                    SendMessageRequest(
                        messages: peerMessages, ownDeviceMessages: ownMessages, clientTimestamp: clientTimestamp ?? Self.nowMillis()))
                return peerDevices
            } catch RelayClientError.mismatchedDevices(let named, _, let extra) {
                let who = named ?? peer
                try DeviceFanOut().repair(account: who, extra: extra, stale: [], store: store)
                for id in extra { try store.forgetSenderKeyHolder(account: who, deviceId: id) }
                try await refreshDevices(of: who)
            } catch RelayClientError.staleDevices(let named, let stale) {
                let who = named ?? peer
                try DeviceFanOut().repair(account: who, extra: [], stale: stale, store: store)
                // A reinstalled device holds none of this device's sender keys any more.
                for id in stale { try store.forgetSenderKeyHolder(account: who, deviceId: id) }
                try await refreshDevices(of: who)
            }
        }
        throw ClientError.deviceListUnsettled(account: peer)
    }

    /// One ciphertext per device, setting up sessions from fresh bundles where there is none.
    /// A changed identity key is accepted with a warning, unless the contact was verified. A
    /// session restored from an older copy of the store is discarded and set up anew.
    /// `prefetched`: bundles fetched ahead (`prefetchBundles`); only devices without one are fetched here.
    func encrypt(
        _ plaintext: [UInt8], for peer: String, devices: [UInt32], prefetched: [PreKeyBundle] = []
    ) async throws -> [OutgoingDeviceMessage] {
        try await recoveringFromRollback { try await encryptOnce(plaintext, for: peer, devices: devices, prefetched: prefetched) }
    }

    private func encryptOnce(
        _ plaintext: [UInt8], for peer: String, devices: [UInt32], prefetched: [PreKeyBundle]
    ) async throws -> [OutgoingDeviceMessage] {
        guard !devices.isEmpty else { return [] }
        if try store.pendingIdentityChange(account: peer)?.refused == true {
            // A verified contact's key changed (seen on receive or on an earlier send): nothing goes to it,
            // over the old session or a new one, until the user trusts the new key.
            emit(.identityChanged(account: peer, accepted: false))
            throw ClientError.identityChanged(account: peer)
        }
        var fetched = prefetched.filter { devices.contains($0.deviceId) }
        for _ in 0..<2 {
            let missing = try devices.filter { id in
                try store.loadSession(for: ProtocolAddress(name: peer, deviceId: id))?.hasCurrentSession != true
            }.filter { id in !fetched.contains { $0.deviceId == id } }
            if !missing.isEmpty {
                let wire: [DevicePreKeyBundle]
                do {
                    wire = missing.count > 1
                        ? try await relay.bundles(account: peer).devices.filter { missing.contains($0.deviceId) }
                        : try await relay.bundles(account: peer, deviceId: missing[0]).devices
                } catch RelayClientError.rejected(404, _, _) where missing.count == 1 {
                    // No such active device (were the whole account unknown, refreshing its device list fails in turn).
                    wire = []
                }
                // Devices the relay serves no bundle for are not (or no longer) active devices of the account:
                // the cached list is out of date, as when the relay calls them extra.
                let gone = missing.filter { id in !wire.contains { $0.deviceId == id } }
                if !gone.isEmpty { throw RelayClientError.mismatchedDevices(account: peer, missing: [], extra: gone) }
                fetched += try wire.map(Self.bundle)
            }
            let bundles = fetched
            do {
                let messages = try DeviceFanOut().encrypt(plaintext, for: peer, deviceIds: devices, store: store, random: random) { _ in bundles }
                return messages.map {
                    OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: $0.type, content: Data($0.body))
                }
            } catch ProtocolError.untrustedIdentity(let address) {
                try acceptChangedIdentity(address, newKey: bundles.first { $0.deviceId == address.deviceId }?.identityKey)
            }
        }
        throw ClientError.identityChanged(account: peer)
    }

    /// A changed identity for `address`: accepted (recorded unverified, old session dropped)
    /// unless the contact was verified, in which case `identityChanged` is thrown.
    func acceptChangedIdentity(_ address: ProtocolAddress, newKey: IdentityKey?) throws {
        if try isVerified(address.name) {
            if let newKey { try store.recordIdentityChange(account: address.name, newKey: newKey, refused: true, local: account.address) }
            emit(.identityChanged(account: address.name, accepted: false))
            throw ClientError.identityChanged(account: address.name)
        }
        guard let newKey else { throw ClientError.identityChanged(account: address.name) }
        let local = account.address
        try store.transaction { store in
            _ = try store.saveIdentity(newKey, for: address)
            try store.deleteSession(for: address)
            try store.recordIdentityChange(account: address.name, newKey: newKey, refused: false, local: local)
        }
        emit(.identityChanged(account: address.name, accepted: true))
    }

    // MARK: device lists

    /// The devices of `peer` as last seen (fetched from the relay when none are known).
    func devices(of peer: String) async throws -> [UInt32] {
        if try store.contact(account: peer) != nil {
            let known = try store.contactDevices(account: peer)
            if !known.isEmpty { return known.map(\.deviceId) }
        }
        try await refreshDevices(of: peer)
        return try store.contactDevices(account: peer).map(\.deviceId)
    }

    /// Fetches `peer`'s device list from the relay and records it; sessions of devices that
    /// disappeared are deleted, those whose registration id changed are archived.
    func refreshDevices(of peer: String) async throws {
        let current = try await relay.devices(of: peer)
        try store.transaction { store in
            if try store.contact(account: peer) == nil { try store.saveContact(account: peer, displayName: nil) }
            let known = try store.contactDevices(account: peer)
            for device in known where !current.contains(where: { $0.deviceId == device.deviceId }) {
                // Removed (or a link that never finished): its session and sender-key hand-out records go too.
                try store.forgetDevice(account: peer, deviceId: device.deviceId)
            }
            for device in current {
                let address = ProtocolAddress(name: peer, deviceId: device.deviceId)
                if var record = try store.loadSession(for: address), let registration = record.remoteRegistrationId,
                   registration != device.registrationId
                {
                    record.archiveCurrentState()
                    try store.storeSession(record, for: address)
                    try store.forgetSenderKeyHolder(account: peer, deviceId: device.deviceId)
                }
                try store.saveContactDevice(account: peer, deviceId: device.deviceId, registrationId: device.registrationId)
            }
        }
    }
}
