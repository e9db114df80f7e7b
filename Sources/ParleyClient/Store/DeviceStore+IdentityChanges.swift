import Foundation
import GRDB
import ParleyProtocol

/// A contact's safety number changed and the user has not looked at the new one yet.
public struct IdentityChangeNotice: Sendable, Equatable {
    public let account: String
    /// When the change was seen (ms since 1970).
    public let changedAt: Int64
    /// The contact was verified: the new key is refused (nothing is sent or accepted under it)
    /// until the user trusts it (`ParleyDevice.trustNewIdentity`).
    public let refused: Bool
}

/// Safety-number changes (`identity_change`): one row per contact, written when its identity key
/// changes (accepted for an unverified contact, refused for a verified one), together with a line
/// in the 1:1 history ("your safety number with bob changed", a local notice row, not a message
/// from the contact). The row stays *pending* until the user looks at the new safety number
/// (`parley safety-number`), verifies the contact or trusts the new key.
extension DeviceStore {
    /// The history line of a safety-number change.
    public static func identityChangeSentence(account: String, refused: Bool) -> String {
        refused
            ? "your safety number with \(account) changed; \(account) was verified, so nothing is sent to or accepted from the new key until you trust it"
            : "your safety number with \(account) changed"
    }

    /// Records that `account`'s identity key is now `newKey` (or that `newKey` was refused), and
    /// writes the history line, in the caller's transaction. Nothing is written when the last
    /// recorded change was to this same key (every device of the account shares the key, so a
    /// change seen on each of them is one change), or, for a refused key, when a refused change
    /// is already pending (a key that is not accepted is not proven: a stream of different ones
    /// must not flood the history). Returns the history line's id when one was written.
    @discardableResult
    public func recordIdentityChange(
        account: String, newKey: IdentityKey, refused: Bool, local: ProtocolAddress
    ) throws(DeviceStoreError) -> MessageID? {
        let now = clock()
        let conversation = try directConversation(with: account)
        return try write { db throws -> MessageID? in
            if let row = try Row.fetchOne(
                db, sql: "SELECT public_key, refused, acknowledged FROM identity_change WHERE account = ?", arguments: [account])
            {
                let lastKey: Data = try row.value("public_key", table: "identity_change", key: account)
                if lastKey == Data(newKey.serialized) { return nil }
                let pendingRefusal = try row.bool("refused", table: "identity_change", key: account)
                    && !(try row.bool("acknowledged", table: "identity_change", key: account))
                if refused && pendingRefusal { return nil }
            }
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO identity_change (account, public_key, changed_at, refused, acknowledged)
                    VALUES (?, ?, ?, ?, 0)
                    """,
                arguments: [account, Data(newKey.serialized), now, refused])
            let result = try insertMessage(
                NewMessage(
                    conversation: conversation.id, sender: local, outgoing: true, sentAt: now, receivedAt: now,
                    body: Self.identityChangeSentence(account: account, refused: refused), notice: true))
            guard case .inserted(let id) = result else { return nil }
            return id
        }
    }

    /// The change of `account`'s safety number the user has not looked at yet, if any.
    public func pendingIdentityChange(account: String) throws(DeviceStoreError) -> IdentityChangeNotice? {
        try read { db throws -> IdentityChangeNotice? in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT changed_at, refused FROM identity_change WHERE account = ? AND acknowledged = 0", arguments: [account])
            else { return nil }
            return IdentityChangeNotice(
                account: account, changedAt: try row.value("changed_at", table: "identity_change", key: account),
                refused: try row.bool("refused", table: "identity_change", key: account))
        }
    }

    /// The user has looked at `account`'s new safety number (or verified the contact): no more
    /// warnings for an accepted change. A refused one (a verified contact's) stays pending until
    /// the new key is trusted (`resolveIdentityChange`): until then nothing flows.
    public func acknowledgeIdentityChange(account: String) throws(DeviceStoreError) {
        try write { db in
            try db.execute(sql: "UPDATE identity_change SET acknowledged = 1 WHERE account = ? AND refused = 0", arguments: [account])
        }
    }

    /// A trusted key: recorded as the last one noticed (no second line when it shows up on
    /// another device), and acknowledged.
    public func resolveIdentityChange(account: String, trustedKey: IdentityKey) throws(DeviceStoreError) {
        let now = clock()
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO identity_change (account, public_key, changed_at, refused, acknowledged) VALUES (?, ?, ?, 0, 1)
                    ON CONFLICT (account) DO UPDATE SET public_key = excluded.public_key, refused = 0, acknowledged = 1
                    """,
                arguments: [account, Data(trustedKey.serialized), now])
        }
    }
}
