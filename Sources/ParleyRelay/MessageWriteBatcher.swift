/// Groups the writes of many concurrent senders into one transaction (group commit), then
/// answers every sender of the batch and wakes the recipients' connections. A sender is only
/// acknowledged after its copies are on disk.
struct MessageWriteBatcher: Sendable {
    private let committer: GroupCommitter<MessageSubmission, SubmissionReceipt>

    init(store: any RelayStore, limits: RelayLimits, onCommitted: @escaping @Sendable ([DeviceAddress]) async -> Void) {
        committer = GroupCommitter(
            commit: { batch in
                try await store.commit(batch, limits: limits).map { result in result.mapError { $0 as any Error } }
            },
            afterBatch: { results in
                var woken = Set<DeviceAddress>()
                for case .success(let receipt) in results { woken.formUnion(receipt.recipients) }
                if !woken.isEmpty { await onCommitted(Array(woken)) }
            })
    }

    func submit(_ submission: MessageSubmission) async throws -> SubmissionReceipt {
        try await committer.submit(submission)
    }
}
