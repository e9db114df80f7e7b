import Foundation
import GRDB
@testable import ParleyRelay
import Testing

/// Stopping a relay closes its store while reads may be in flight. `DatabasePool.close()` waits for
/// every reader, and an async read releases its reader only when its task resumes on Swift's
/// cooperative pool (one thread per core): a close that blocked a cooperative thread froze a test
/// process in which two relays stopped at once on a 2-core machine (every test then hung).
@Suite struct StoreCloseTests {
    @Test(.timeLimit(.minutes(3))) func closingStoresWithReadsInFlightLeavesTheCooperativePoolFree() async throws {
        // More closes than the cooperative pool has threads.
        let count = 2 * max(ProcessInfo.processInfo.activeProcessorCount, 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-close-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let stores = try (0..<count).map { try SQLiteRelayStore(path: dir.appendingPathComponent("relay-\($0).sqlite").path) }

        // Everything that waits runs on threads of its own, so that the test observes the cooperative
        // pool without depending on it: each store gets a read in flight (held until released), then
        // every store is closed, then a probe task must run while the closes wait for those reads.
        let outcome: (probeRan: Bool, closed: Int) = await withCheckedContinuation { continuation in
            Thread {
                let entered = DispatchSemaphore(value: 0)
                let release = DispatchSemaphore(value: 0)
                for store in stores {
                    let pool = store.pool
                    Thread {
                        try? pool.read { _ in
                            entered.signal()
                            release.wait()
                        }
                    }.start()
                }
                for _ in stores { entered.wait() }
                let closed = DispatchSemaphore(value: 0)
                for store in stores {
                    Task {
                        try? await store.close()
                        closed.signal()
                    }
                }
                // Let the closes start and wait for the held readers.
                Thread.sleep(forTimeInterval: 1)
                let probe = DispatchSemaphore(value: 0)
                Task { probe.signal() }
                let probeRan = probe.wait(timeout: .now() + 20) == .success
                for _ in stores { release.signal() }
                var done = 0
                for _ in stores where closed.wait(timeout: .now() + 60) == .success { done += 1 }
                continuation.resume(returning: (probeRan, done))
            }.start()
        }
        #expect(outcome.probeRan, "the cooperative pool was blocked while stores closed")
        #expect(outcome.closed == count)
    }
}
