/// Groups the writes of many concurrent senders into one transaction: whatever is pending when the
/// previous commit finishes is committed together (group commit), then every sender of the batch is
/// answered. A sender is only acknowledged after its copies are on disk.
actor MessageWriteBatcher {
    private let store: any RelayStore
    private let limits: RelayLimits
    private let onCommitted: @Sendable ([DeviceAddress]) async -> Void
    private var pending: [(MessageSubmission, CheckedContinuation<SubmissionReceipt, any Error>)] = []
    private var flushing = false

    init(store: any RelayStore, limits: RelayLimits, onCommitted: @escaping @Sendable ([DeviceAddress]) async -> Void) {
        self.store = store
        self.limits = limits
        self.onCommitted = onCommitted
    }

    func submit(_ submission: MessageSubmission) async throws -> SubmissionReceipt {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((submission, continuation))
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
                let results = try await store.commit(batch.map(\.0), limits: limits)
                var woken = Set<DeviceAddress>()
                for ((_, continuation), result) in zip(batch, results) {
                    switch result {
                    case .success(let receipt):
                        woken.formUnion(receipt.recipients)
                        continuation.resume(returning: receipt)
                    case .failure(let error):
                        continuation.resume(throwing: error)
                    }
                }
                if !woken.isEmpty { await onCommitted(Array(woken)) }
            } catch {
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
        flushing = false
    }
}
