/// Group commit: whatever is pending when the previous commit finishes is committed together in
/// one call (one transaction), then every caller of the batch is answered with its own result.
/// A caller is only answered after its batch's commit returned, so an answer means "durable".
/// Batches hold at most `RelayLimits.maxSubmissionsPerTransaction` entries.
actor GroupCommitter<Input: Sendable, Output: Sendable> {
    typealias Commit = @Sendable ([Input]) async throws -> [Result<Output, any Error>]
    typealias AfterBatch = @Sendable ([Result<Output, any Error>]) async -> Void

    private let commit: Commit
    private let afterBatch: AfterBatch?
    private var pending: [(Input, CheckedContinuation<Output, any Error>)] = []
    private var flushing = false

    /// `commit` must return one result per input, in order. `afterBatch` runs once the batch's
    /// callers have been answered.
    init(commit: @escaping Commit, afterBatch: AfterBatch? = nil) {
        self.commit = commit
        self.afterBatch = afterBatch
    }

    func submit(_ input: Input) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((input, continuation))
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
                let results = try await commit(batch.map(\.0))
                for ((_, continuation), result) in zip(batch, results) { continuation.resume(with: result) }
                if results.count < batch.count {
                    for (_, continuation) in batch.dropFirst(results.count) {
                        continuation.resume(throwing: RelayError.internalError)
                    }
                }
                if let afterBatch { await afterBatch(results) }
            } catch {
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
        flushing = false
    }
}
