import Foundation
import GRDB
import ParleyProtocol

/// One recipient device's receipts for an outgoing message (times in ms since 1970; nil: not yet, or not
/// known: a message sent from another own device has no `sentAt` here).
public struct DeviceReceipt: Sendable, Equatable {
    public let deviceId: UInt32
    public let sentAt: Int64?
    public let deliveredAt: Int64?
    public let readAt: Int64?

    public init(deviceId: UInt32, sentAt: Int64?, deliveredAt: Int64?, readAt: Int64?) {
        self.deviceId = deviceId
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
        self.readAt = readAt
    }
}

/// What happened to an outgoing message at one recipient account: its status (the furthest any of its
/// devices got: `DeliveryStatus`), when the relay took it, and each device's receipts.
public struct RecipientReceipts: Sendable, Equatable {
    public let account: String
    public let status: DeliveryStatus
    /// When the relay acknowledged the send to this account (nil for messages sent before `client-v7-receipts`
    /// or from another own device).
    public let sentAt: Int64?
    /// The devices, by id: those the message was encrypted for (1:1 sends) and those that sent a receipt.
    public let devices: [DeviceReceipt]

    public init(account: String, status: DeliveryStatus, sentAt: Int64?, devices: [DeviceReceipt]) {
        self.account = account
        self.status = status
        self.sentAt = sentAt
        self.devices = devices
    }
}

/// A compact summary of an outgoing message's receipts, for history lines.
public struct ReceiptSummary: Sendable, Equatable {
    /// Recipient accounts (1 for a 1:1 message, the members but this account for a group message).
    public let recipients: Int
    /// 1:1: devices the message went to (or that answered); group: member accounts.
    public let total: Int
    public let delivered: Int
    public let read: Int
    public let pending: Int
    public let failed: Int
    /// Whether `total`, `delivered` and `read` count devices (a 1:1 message sent since `client-v7-receipts`)
    /// rather than accounts.
    public let perDevice: Bool

    public init(recipients: Int, total: Int, delivered: Int, read: Int, pending: Int, failed: Int, perDevice: Bool) {
        self.recipients = recipients
        self.total = total
        self.delivered = delivered
        self.read = read
        self.pending = pending
        self.failed = failed
        self.perDevice = perDevice
    }
}

extension DeviceStore {
    /// Records that the relay took an outgoing message for `account`'s `devices` (1:1 sends: the devices
    /// it was encrypted for) at `at`.
    public func recordSent(_ message: MessageID, to account: String, devices: [UInt32], at: Int64) throws(DeviceStoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE message_status SET sent_at = COALESCE(sent_at, ?) WHERE message_id = ? AND recipient_account = ?",
                arguments: [at, message.rawValue, account])
            for device in devices {
                try db.execute(
                    sql: """
                        INSERT INTO message_receipt (message_id, recipient_account, device_id, sent_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (message_id, recipient_account, device_id) DO UPDATE SET sent_at = COALESCE(sent_at, excluded.sent_at)
                        """,
                    arguments: [message.rawValue, account, Int64(device), at])
            }
        }
    }

    /// Records a DELIVERED or READ receipt from one device of a recipient at `at`. A read receipt also counts
    /// as delivered (a device reads what it stored). Earlier times are kept (a repeated receipt changes
    /// nothing). Returns whether anything changed.
    @discardableResult
    public func recordReceipt(
        _ status: DeliveryStatus, from device: ProtocolAddress, of message: MessageID, at: Int64
    ) throws(DeviceStoreError) -> Bool {
        guard status == .delivered || status == .read else { return false }
        return try write { db throws -> Bool in
            let read: Int64? = status == .read ? at : nil
            try db.execute(
                sql: """
                    INSERT INTO message_receipt (message_id, recipient_account, device_id, delivered_at, read_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (message_id, recipient_account, device_id) DO UPDATE SET
                        delivered_at = COALESCE(delivered_at, excluded.delivered_at),
                        read_at = COALESCE(read_at, excluded.read_at)
                    WHERE delivered_at IS NULL OR (read_at IS NULL AND excluded.read_at IS NOT NULL)
                    """,
                arguments: [message.rawValue, device.name, Int64(device.deviceId), at, read])
            return db.changesCount > 0
        }
    }

    /// Every recipient of an outgoing message with its status and device receipts, by account name.
    public func receipts(of message: MessageID) throws(DeviceStoreError) -> [RecipientReceipts] {
        try read { db throws -> [RecipientReceipts] in
            let statusRows = try Row.fetchAll(
                db, sql: "SELECT recipient_account, status, sent_at FROM message_status WHERE message_id = ? ORDER BY recipient_account",
                arguments: [message.rawValue])
            let deviceRows = try Row.fetchAll(
                db,
                sql: """
                    SELECT recipient_account, device_id, sent_at, delivered_at, read_at FROM message_receipt
                    WHERE message_id = ? ORDER BY recipient_account, device_id
                    """,
                arguments: [message.rawValue])
            var devices: [String: [DeviceReceipt]] = [:]
            for row in deviceRows {
                let account: String = try row.value("recipient_account", table: "message_receipt", key: "\(message.rawValue)")
                let id: Int64 = try row.value("device_id", table: "message_receipt", key: "\(message.rawValue)/\(account)")
                guard let deviceId = UInt32(exactly: id) else {
                    throw DeviceStoreError.corruptRow(table: "message_receipt", key: "\(message.rawValue)/\(account)", reason: "device id \(id)")
                }
                func time(_ column: String) throws(DeviceStoreError) -> Int64? {
                    try row.optionalValue(column, as: Int64.self, table: "message_receipt", key: "\(message.rawValue)/\(account)/\(id)")
                }
                devices[account, default: []].append(
                    DeviceReceipt(deviceId: deviceId, sentAt: try time("sent_at"), deliveredAt: try time("delivered_at"), readAt: try time("read_at")))
            }
            return try statusRows.map { row throws -> RecipientReceipts in
                let account: String = try row.value("recipient_account", table: "message_status", key: "\(message.rawValue)")
                let raw: String = try row.value("status", table: "message_status", key: "\(message.rawValue)/\(account)")
                guard let status = DeliveryStatus(rawValue: raw) else {
                    throw DeviceStoreError.corruptRow(table: "message_status", key: "\(message.rawValue)/\(account)", reason: "unknown status \(raw)")
                }
                let sentAt = try row.optionalValue("sent_at", as: Int64.self, table: "message_status", key: "\(message.rawValue)/\(account)")
                return RecipientReceipts(account: account, status: status, sentAt: sentAt, devices: devices[account] ?? [])
            }
        }
    }

    /// The summary a history line shows: for a 1:1 message, devices delivered to / read on out of the
    /// devices it went to; for a group message, member accounts (any of whose devices) delivered / read.
    public func receiptSummary(of message: MessageID, group: Bool) throws(DeviceStoreError) -> ReceiptSummary {
        let recipients = try receipts(of: message)
        let pending = recipients.filter { $0.status == .pending }.count
        let failed = recipients.filter { $0.status == .failed }.count
        if group || recipients.count != 1 {
            return ReceiptSummary(
                recipients: recipients.count, total: recipients.count,
                delivered: recipients.filter { $0.status == .delivered || $0.status == .read }.count,
                read: recipients.filter { $0.status == .read }.count, pending: pending, failed: failed, perDevice: false)
        }
        let only = recipients[0]
        if only.devices.isEmpty {
            // Sent before per-device receipts (or from another own device, no receipt yet): the account's status.
            let delivered = only.status == .delivered || only.status == .read ? 1 : 0
            return ReceiptSummary(
                recipients: 1, total: 1, delivered: delivered, read: only.status == .read ? 1 : 0, pending: pending, failed: failed,
                perDevice: false)
        }
        return ReceiptSummary(
            recipients: 1, total: only.devices.count, delivered: only.devices.filter { $0.deliveredAt != nil }.count,
            read: only.devices.filter { $0.readAt != nil }.count, pending: pending, failed: failed, perDevice: true)
    }

    /// Messages whose sender-chosen id starts with `prefix` (lowercase hex and dashes), newest first, at most
    /// `limit`: how a user names a message (`parley info 1b2c3d4e`).
    public func messages(uidPrefix prefix: String, limit: Int = 10) throws(DeviceStoreError) -> [MessageID] {
        let cleaned = prefix.lowercased()
        guard !cleaned.isEmpty, cleaned.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return [] }
        return try read { db in
            try Int64.fetchAll(
                db, sql: "SELECT id FROM message WHERE message_uid >= ? AND message_uid < ? ORDER BY id DESC LIMIT ?",
                arguments: [cleaned, cleaned + "\u{7f}", limit]
            ).map(MessageID.init(rawValue:))
        }
    }
}
