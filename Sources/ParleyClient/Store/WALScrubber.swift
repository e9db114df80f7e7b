import Foundation
import GRDB

/// Erases old page images of key material from the `-wal` file.
///
/// In WAL mode every committed page is appended to `-wal`, and the older images of a page stay
/// there until a checkpoint has copied the pages into the database and the log is restarted;
/// even then the file keeps its size and its stale frames until they are overwritten.
/// `secure_delete = ON` zeroes deleted rows and freed pages in the pages SQLite writes, but an
/// image written before the deletion is untouched. So after a transaction that deleted key
/// material (a used one-time prekey, a session, a signed prekey, sender keys) commits, the store
/// runs `PRAGMA wal_checkpoint(TRUNCATE)`: the pages are copied into the database file and the
/// WAL is truncated to zero bytes. Records that are merely replaced (a session after each ratchet
/// step: superseded chain keys) are erased in batches, after `replacementsPerScrub` of them, when
/// the engine has drained a backlog (`DeviceStore.scrub()`), and when the store closes.
final class WALScrubber: @unchecked Sendable {
    /// Replaced key records between two truncating checkpoints. A checkpoint costs a few
    /// milliseconds (two fsyncs); after every ratchet step it would double the cost of receiving.
    /// 64 bounds the superseded chain keys left in the WAL to those of the last 64 messages.
    static let replacementsPerScrub = 64

    private let lock = NSLock()
    private var replacements = 0
    private var scheduled = false

    /// Key material was deleted in the current transaction: scrub once it commits.
    func deleted(_ db: Database) { schedule(db) }

    /// A key record was replaced in the current transaction.
    func replaced(_ db: Database) {
        lock.lock()
        replacements += 1
        let due = replacements >= Self.replacementsPerScrub
        lock.unlock()
        if due { schedule(db) }
    }

    private func schedule(_ db: Database) {
        lock.lock()
        let already = scheduled
        scheduled = true
        lock.unlock()
        guard !already else { return }
        db.afterNextTransaction(
            onCommit: { db in self.scrub(db) },
            onRollback: { _ in
                self.lock.lock()
                self.scheduled = false
                self.lock.unlock()
            })
    }

    /// Checkpoints and truncates the WAL now (outside any transaction). A checkpoint that cannot
    /// complete is retried at the next occasion; it never fails the write that asked for it.
    func scrub(_ db: Database) {
        lock.lock()
        scheduled = false
        replacements = 0
        lock.unlock()
        _ = try? db.checkpoint(.truncate)
    }
}
