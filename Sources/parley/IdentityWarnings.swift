import Foundation
import ParleyClient

/// Safety-number warnings: every command that sends to or shows a contact whose safety number
/// changed (and the user has not looked at the new one: `parley safety-number`, `verify` or
/// `trust` ends the warnings) prints one line per such contact on standard error.
enum IdentityWarnings {
    static func line(_ notice: IdentityChangeNotice) -> String {
        let account = notice.account
        let when = Output.time(notice.changedAt)
        if notice.refused {
            return "WARNING: your safety number with \(account) changed (\(when) UTC) and \(account) was verified: nothing is sent to "
                + "or accepted from the new key until you compare numbers (`parley safety-number \(account)`) and run `parley trust \(account)`"
        }
        return "WARNING: your safety number with \(account) changed (\(when) UTC); compare it out of band: `parley safety-number \(account)`"
    }

    /// Prints the warnings for `accounts` (this account itself is skipped).
    static func warn(_ device: ParleyDevice, about accounts: [String]) {
        for account in Set(accounts).sorted() where account != device.account.name {
            guard let notice = try? device.pendingIdentityChange(of: account) else { continue }
            FileHandle.standardError.write(Data("parley: \(line(notice))\n".utf8))
        }
    }

    /// The contacts a command addresses: the peer, or the members of the group.
    static func accounts(_ device: ParleyDevice, peer: String?, groupId: String?) -> [String] {
        if let groupId { return (try? device.store.groupView(groupId: groupId).members) ?? [] }
        return peer.map { [$0] } ?? []
    }
}
