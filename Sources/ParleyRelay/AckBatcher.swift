import Foundation

/// Groups the acks of many devices into one write transaction (like `MessageWriteBatcher` for sends):
/// whatever is pending when the previous commit finishes is committed together.
actor AckBatcher {
    private let store: any RelayStore
    private var pending: [(DeviceAddress, [UUID], CheckedContinuation<Int, any Error>)] = []
    private var flushing = false

    init(store: any RelayStore) {
        self.store = store
    }

    /// Removes the envelopes from the device's queue; returns how many were removed.
    func ack(_ address: DeviceAddress, ids: [UUID]) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((address, ids, continuation))
            if !flushing {
                flushing = true
                Task { await self.flushLoop() }
            }
        }
    }

    private func flushLoop() async {
        while !pending.isEmpty {
            let count = min(pending.count, RelayLimits.maxSubmissionsPerTransaction)
            let batch = Array(pending.prefix(count))
            pending.removeFirst(count)
            do {
                let results = try await store.ack(batch.map { ($0.0, $0.1) })
                for (entry, removed) in zip(batch, results) { entry.2.resume(returning: removed) }
            } catch {
                for entry in batch { entry.2.resume(throwing: error) }
            }
        }
        flushing = false
    }
}
