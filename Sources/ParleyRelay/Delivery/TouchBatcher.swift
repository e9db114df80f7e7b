/// Groups the `last_seen` updates of connecting and disconnecting devices into one write transaction
/// (group commit, like `AckBatcher`): thousands of devices connecting at once cost a few commits, not
/// one fsync each.
struct TouchBatcher: Sendable {
    private let committer: GroupCommitter<DeviceTouch, Void>

    init(store: any RelayStore) {
        committer = GroupCommitter { batch in
            try await store.touchDevices(batch)
            return batch.map { _ in .success(()) }
        }
    }

    /// Records that the device connected or disconnected at `now`; returns after the commit.
    func touch(_ address: DeviceAddress, now: Int64) async throws {
        try await committer.submit(DeviceTouch(address: address, now: now))
    }
}

/// A device's `last_seen` update.
struct DeviceTouch: Sendable {
    let address: DeviceAddress
    let now: Int64
}
