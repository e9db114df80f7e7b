import NIOConcurrencyHelpers

/// Group commit: whatever is pending when the previous commit finishes is committed together in
/// one call (one transaction), then every caller of the batch is answered with its own result.
/// A caller is only answered after its batch's commit returned, so an answer means "durable".
/// Batches hold at most `RelayLimits.maxSubmissionsPerTransaction` entries.
///
/// Submitting takes a lock and appends; one flushing task runs while there is anything pending (not a task,
/// actor hop or continuation per submission: the WebSocket sessions submit with a completion handler from
/// their event loop).
final class GroupCommitter<Input: Sendable, Output: Sendable>: Sendable {
    typealias Commit = @Sendable ([Input]) async throws -> [Result<Output, any Error>]
    typealias AfterBatch = @Sendable ([Result<Output, any Error>]) async -> Void
    typealias Completion = @Sendable (Result<Output, any Error>) -> Void

    private struct State {
        var pending: [(Input, Completion)] = []
        var flushing = false
        /// The task answering the last committed batch. The next batch's answers wait for it, also across
        /// flush loops (one ends when nothing is pending, the next starts with the next submission), so
        /// batches are always answered and delivered in commit order.
        var finishing: Task<Void, Never>?
    }

    private let commit: Commit
    private let afterBatch: AfterBatch?
    private let state = NIOLockedValueBox(State())

    /// `commit` must return one result per input, in order. `afterBatch` runs once the batch's
    /// callers have been answered.
    init(commit: @escaping Commit, afterBatch: AfterBatch? = nil) {
        self.commit = commit
        self.afterBatch = afterBatch
    }

    /// Queues `input` for the next commit; `completion` runs once it is committed (or refused), on the
    /// flushing task. It must not block.
    func submit(_ input: Input, completion: @escaping Completion) {
        let startFlushing = state.withLockedValue { state -> Bool in
            state.pending.append((input, completion))
            guard !state.flushing else { return false }
            state.flushing = true
            return true
        }
        if startFlushing { Task { await self.flushLoop() } }
    }

    func submit(_ input: Input) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            submit(input) { result in continuation.resume(with: result) }
        }
    }

    /// Commits batch after batch while anything is pending. Answering a batch's callers and `afterBatch` run
    /// in a task of their own, in batch order, while the next batch commits (the writer does not wait for them).
    private func flushLoop() async {
        while true {
            let batch = state.withLockedValue { state -> [(Input, Completion)] in
                let count = min(state.pending.count, RelayLimits.maxSubmissionsPerTransaction)
                if count == 0 {
                    state.flushing = false
                    return []
                }
                if count == state.pending.count {
                    defer { state.pending = [] }
                    return state.pending
                }
                let batch = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            let results: [Result<Output, any Error>]
            do {
                let committed = try await commit(batch.map(\.0))
                results = batch.indices.map { index in
                    index < committed.count ? committed[index] : .failure(RelayError.internalError)
                }
            } catch {
                results = batch.map { _ in .failure(error) }
            }
            let afterBatch = self.afterBatch
            state.withLockedValue { state in
                let previous = state.finishing
                state.finishing = Task {
                    await previous?.value
                    for ((_, completion), result) in zip(batch, results) { completion(result) }
                    if let afterBatch { await afterBatch(results) }
                }
            }
        }
    }
}
