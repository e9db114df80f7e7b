import Foundation

/// Groups the acks of many devices into one write transaction (group commit, like
/// `MessageWriteBatcher` for sends).
struct AckBatcher: Sendable {
    private let committer: GroupCommitter<(DeviceAddress, [UUID]), Int>

    init(store: any RelayStore) {
        committer = GroupCommitter { batch in try await store.ack(batch).map { .success($0) } }
    }

    /// Removes the envelopes from the device's queue; returns how many were removed.
    func ack(_ address: DeviceAddress, ids: [UUID]) async throws -> Int {
        try await committer.submit((address, ids))
    }

    /// The same with a completion handler (runs on the committing task, must not block).
    func ack(_ address: DeviceAddress, ids: [UUID], completion: @escaping @Sendable (Result<Int, any Error>) -> Void) {
        committer.submit((address, ids), completion: completion)
    }
}
