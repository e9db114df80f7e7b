import Foundation
import GRDB
import GRDBSQLite
import NIOConcurrencyHelpers

/// WAL checkpoints out of the commit path (`Specs/storage.md`, "Write-ahead log").
///
/// SQLite's automatic checkpoint runs inside the commit that takes the log past 1,000 pages: that commit, and every
/// send and ack queued on the writer behind it, waited for the whole copy of 4 MiB into the database file and its
/// `fsync` (p50 33 ms, up to 0.5 s under the abuse soak). Here the writer connection has `wal_autocheckpoint = 0`
/// and a WAL hook instead: after a commit that leaves at least `checkpointFrames` frames not yet copied into the
/// database, the hook (which only counts) queues one PASSIVE checkpoint on the writer, behind the writes already
/// waiting for it. Each checkpoint therefore copies about `checkpointFrames` pages, a few milliseconds, between two
/// transactions rather than inside one.
///
/// Running on the writer is what lets the log restart under a continuous stream of commits: the checkpoint copies
/// every frame up to the last commit (no write can interleave), so unless a reader still holds an older snapshot
/// the log is fully copied and the next write transaction starts it over from its first frame. A checkpointer on a
/// connection of its own never caught up with the stream (tried, see BENCHMARKS.md). PASSIVE never waits for
/// readers or takes the busy handler, so a checkpoint cannot stall the writer for the busy timeout.
///
/// The bound: the log holds at most `checkpointFrames` frames plus those of the commits queued meanwhile and
/// those written while a reader holds a snapshot (reads are short); `journal_size_limit` truncates the file back
/// to `walSizeLimitBytes` whenever the log restarts after it grew beyond that.
final class SQLiteCheckpointer: Sendable {
    /// Log frames (pages) written since the last checkpoint that make the writer queue the next one. 256 pages
    /// (1 MiB at 4 KiB pages) keep one checkpoint in the low milliseconds, while the database file's `fsync`, the
    /// fixed cost of each, is paid about five times a second at the soak's write rate (~1,200 frames/s), not per
    /// commit.
    static let checkpointFrames = 256
    /// The size the log file is truncated back to when it restarts after growing past it (`journal_size_limit`):
    /// 4 MiB, four times what a checkpoint interval writes, so a log that restarts normally is never truncated and
    /// re-grown (an `ftruncate` and file extension each time).
    static let walSizeLimitBytes = 4 * 1024 * 1024

    /// What the checkpointer did, for tests and operations.
    struct Statistics: Sendable, Equatable {
        /// Checkpoints run.
        var checkpoints = 0
        /// Checkpoints after which every frame of the log was in the database (the log restarts on the next write).
        var completeCheckpoints = 0
        /// The most frames the log held after any commit.
        var maxLogFrames = 0
        /// The longest checkpoint, in microseconds.
        var maxCheckpointMicros = 0
        /// All checkpoints together, in microseconds.
        var totalCheckpointMicros = 0
        /// Checkpoints that failed (SQLite error): the next commit past the threshold queues another.
        var failures = 0
    }

    private struct State {
        /// Frames in the log after the last commit (the WAL hook's count).
        var logFrames = 0
        /// Frames of the log already copied into the database by the last checkpoint.
        var copiedFrames = 0
        /// A checkpoint is queued on the writer and has not run yet.
        var queued = false
        var statistics = Statistics()
        /// The writer's pool; set once the pool is open (commits of its set-up queue nothing).
        weak var pool: DatabasePool?
    }

    private let state = NIOLockedValueBox(State())

    var statistics: Statistics { state.withLockedValue { $0.statistics } }

    /// Sets up a newly opened connection: the writer gets no automatic checkpoint and the WAL hook; readers
    /// never commit a write, so nothing changes for them.
    func prepare(_ db: Database) throws {
        guard !db.configuration.readonly else { return }
        try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
        try db.execute(sql: "PRAGMA journal_size_limit = \(Self.walSizeLimitBytes)")
        // The hook's context is this object, unretained: the pool's configuration (which holds the `prepare`
        // closure, hence this object) outlives its connections.
        sqlite3_wal_hook(db.sqliteConnection, sqliteCheckpointerWALHook, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Starts queueing checkpoints on `pool`'s writer.
    func attach(_ pool: DatabasePool) {
        state.withLockedValue { $0.pool = pool }
    }

    /// Called by the WAL hook on the writer's thread, inside the commit (after the log was written and synced):
    /// only counts, and queues a checkpoint when the uncopied frames reach the threshold.
    fileprivate func committed(logFrames: Int) {
        let pool = state.withLockedValue { state -> DatabasePool? in
            // A log that restarted holds fewer frames than were copied from the old one.
            if logFrames < state.copiedFrames { state.copiedFrames = 0 }
            state.logFrames = logFrames
            state.statistics.maxLogFrames = max(state.statistics.maxLogFrames, logFrames)
            guard !state.queued, logFrames - state.copiedFrames >= Self.checkpointFrames, let pool = state.pool else {
                return nil
            }
            state.queued = true
            return pool
        }
        guard let pool else { return }
        // The checkpoint waits for the writer like any write: after the transactions already queued, never
        // inside one.
        pool.asyncWriteWithoutTransaction { [self] db in
            checkpoint(db)
        }
    }

    private func checkpoint(_ db: Database) {
        // Queued just before the pool closed: the connection is gone, and closing checkpointed the log anyway.
        guard let connection = db.sqliteConnection else {
            state.withLockedValue { $0.queued = false }
            return
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var logFrames: Int32 = -1
        var copiedFrames: Int32 = -1
        let code = sqlite3_wal_checkpoint_v2(connection, "main", SQLITE_CHECKPOINT_PASSIVE, &logFrames, &copiedFrames)
        let micros = Int((DispatchTime.now().uptimeNanoseconds - start) / 1_000)
        state.withLockedValue { state in
            state.queued = false
            guard code == SQLITE_OK, logFrames >= 0, copiedFrames >= 0 else {
                state.statistics.failures += 1
                return
            }
            state.logFrames = Int(logFrames)
            state.copiedFrames = Int(copiedFrames)
            state.statistics.checkpoints += 1
            if copiedFrames == logFrames { state.statistics.completeCheckpoints += 1 }
            state.statistics.maxCheckpointMicros = max(state.statistics.maxCheckpointMicros, micros)
            state.statistics.totalCheckpointMicros += micros
        }
    }
}

/// SQLite's WAL hook (`sqlite3_wal_hook`): runs after each commit of the writer with the number of frames in the
/// log. Returns `SQLITE_OK` always: the commit is durable whatever the checkpointer does.
private func sqliteCheckpointerWALHook(
    _ context: UnsafeMutableRawPointer?, _ connection: OpaquePointer?, _ database: UnsafePointer<CChar>?, _ frames: Int32
) -> Int32 {
    guard let context else { return SQLITE_OK }
    Unmanaged<SQLiteCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(logFrames: Int(frames))
    return SQLITE_OK
}

extension SQLiteRelayStore {
    func reportMetrics(to metrics: RelayMetrics) {
        let checkpoints = checkpointer.statistics
        metrics.walCheckpoints.set(Int64(checkpoints.checkpoints))
        metrics.walCheckpointMaxMicros.set(Int64(checkpoints.maxCheckpointMicros))
        metrics.walCheckpointTotalMicros.set(Int64(checkpoints.totalCheckpointMicros))
        metrics.walMaxFrames.set(Int64(checkpoints.maxLogFrames))
    }
}
