import Foundation

/// Groups the acks of many devices into one write transaction (group commit, like
/// `MessageWriteBatcher` for sends).
struct AckBatcher: Sendable {
    private let committer: GroupCommitter<(DeviceAddress, [UUID]), Int>

    init(store: any RelayStore) {
        committer = GroupCommitter { batch in try await store.ack(batch).map { .success($0) } }
    }

    /// Removes the envelopes from the device's queue; `completion` gets how many were removed (it runs on the
    /// committing task and must not block).
    func ack(_ address: DeviceAddress, ids: [UUID], completion: @escaping @Sendable (Result<Int, any Error>) -> Void) {
        committer.submit((address, ids), completion: completion)
    }
}
