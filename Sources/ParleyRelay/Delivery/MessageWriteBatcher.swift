/// Groups the writes of many concurrent senders into one transaction (group commit), then
/// answers every sender of the batch and hands the committed envelopes to the recipients'
/// connections. A sender is only acknowledged after its copies are on disk.
struct MessageWriteBatcher: Sendable {
    private let committer: GroupCommitter<MessageSubmission, SubmissionReceipt>

    init(store: any RelayStore, limits: RelayLimits, onCommitted: @escaping @Sendable ([Delivery]) async -> Void) {
        committer = GroupCommitter(
            commit: { batch in
                try await store.commit(batch, limits: limits).map { result in result.mapError { $0 as any Error } }
            },
            afterBatch: { results in
                var deliveries: [Delivery] = []
                for case .success(let receipt) in results { deliveries.append(contentsOf: receipt.deliveries) }
                if !deliveries.isEmpty { await onCommitted(deliveries) }
            })
    }

    func submit(_ submission: MessageSubmission) async throws -> SubmissionReceipt {
        try await committer.submit(submission)
    }

    /// Queues the submission for the next commit; `completion` runs (on the committing task, must not block)
    /// once it is durable or refused.
    func submit(
        _ submission: MessageSubmission, completion: @escaping @Sendable (Result<SubmissionReceipt, any Error>) -> Void
    ) {
        committer.submit(submission, completion: completion)
    }
}
