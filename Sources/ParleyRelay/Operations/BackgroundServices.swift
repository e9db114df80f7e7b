import Foundation
import Logging
import ServiceLifecycle

/// Deletes expired queue entries periodically (retention), and refreshes the queue-depth gauge.
struct ExpiryService: Service {
    let core: RelayCore

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await sweep()
                try await Task.sleep(for: .seconds(core.limits.expirySweepSeconds))
            }
        }
    }

    func sweep() async {
        do {
            let now = RelayClock.nowMillis()
            var total = 0
            while true {
                let result = try await core.store.deleteExpired(now: now)
                total += result.expiredMessages
                if result.expiredMessages < RelayLimits.expiryBatchSize { break }
            }
            if total > 0 {
                core.metrics.expired.increment(by: Int64(total))
                core.logger.notice("expired undelivered messages", metadata: ["count": "\(total)"])
            }
            core.metrics.queueDepth.set(Int64(try await core.store.totalQueued()))
        } catch is CancellationError {
            // The relay is stopping (a sweep cut short then is not a failure; the next start sweeps again).
        } catch {
            core.logger.error("expiry sweep failed", metadata: ["error": "\(type(of: error))"])
        }
    }
}

/// On graceful shutdown, asks every WebSocket session to close (before the HTTP server stops).
struct SessionCloser: Service {
    let core: RelayCore

    func run() async throws {
        try? await gracefulShutdown()
        await core.hub.closeAll()
    }
}

/// The node's part in its deployment (listening to the other nodes, lease heartbeats) until graceful shutdown,
/// then leaving it (a no-op on SQLite).
struct ClusterService: Service {
    let core: RelayCore

    func run() async throws {
        await core.cluster.run(core: core)
    }
}

/// Closes the store at the very end of a graceful shutdown (it is the first service, so it stops last).
struct StoreCloser: Service {
    let core: RelayCore

    func run() async throws {
        try? await gracefulShutdown()
        do {
            // `RelayStore.close()` never blocks a thread of Swift's cooperative pool (SQLite closes its pool on a
            // thread of its own, PostgreSQL waits suspended): a blocked pool thread hung a whole test process when two
            // relays stopped at once on 2 cores.
            try await core.store.close()
        } catch {
            core.logger.warning("closing the database failed", metadata: ["error": "\(type(of: error))"])
        }
        core.logger.info("relay stopped")
    }
}
