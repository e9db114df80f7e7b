import Foundation
import NIOConcurrencyHelpers
import ParleyWire
import PostgresNIO
import Testing

@testable import ParleyRelay

/// Which row locks the PostgreSQL store's sends and acks wait for (issue 11: with two nodes, one node's send batches
/// and the other node's ack batches concern the same devices, and every wait between them is latency). A send batch
/// holds the rows of the devices it queues for until it commits; acks and other nodes' sends from those devices must
/// not wait for it. And the room acks release is folded back into the counters by the expiry sweep.
@Suite(
    "PostgreSQL store: sends and acks do not wait for each other", .timeLimit(.minutes(3)),
    .enabled(if: TestBackend.available.contains(.postgres), "needs PostgreSQL (scripts/test.sh)"))
struct PostgresLockTests {
    /// Runs `work` while a transaction holds `address`'s device row as a send batch to it does (`FOR NO KEY UPDATE`);
    /// true when `work` finished while the row was held (within 10 s), false when it had to wait for the release.
    static func finishesWhileHeld(
        _ store: PostgresRelayStore, _ address: DeviceAddress, _ work: @escaping @Sendable () async throws -> Void
    ) async throws -> Bool {
        let done = NIOLockedValueBox(false)
        let held = NIOLockedValueBox(false)
        let task = Task {
            // Starts once the row is held (bounded: if the transaction failed, the test fails on its error).
            let start = ContinuousClock.now + .seconds(30)
            while !held.withLockedValue({ $0 }), ContinuousClock.now < start { try await Task.sleep(for: .milliseconds(5)) }
            try await work()
            done.withLockedValue { $0 = true }
        }
        let finishedWhileHeld = try await store.transaction { connection in
            try await store.lockDevices(connection, [address])
            held.withLockedValue { $0 = true }
            let deadline = ContinuousClock.now + .seconds(10)
            while !done.withLockedValue({ $0 }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return done.withLockedValue { $0 }
        }
        try await task.value
        return finishedWhileHeld
    }

    /// Bob's device row is held by a send batch to bob (on this node or another); bob's acks go through at once.
    @Test func acksDoNotWaitForASendHoldingTheirDevice() async throws {
        let store = try await PostgresFailureTests.store()
        defer { TestBackend.closeLater(store) }
        let alice = try await StoreBackendTests.account(store, "alice")[0]
        let bob = try await StoreBackendTests.account(store, "bob")[0]
        _ = try await store.commit(
            [
                try await StoreBackendTests.direct(store, from: alice, to: bob.account),
                try await StoreBackendTests.direct(store, from: alice, to: bob.account),
            ], limits: StoreBackendTests.limits)
        let queued = try await store.pending(bob.address, afterSeq: 0, limit: 10)
        #expect(queued.count == 2)
        let removed = NIOLockedValueBox<[Int]>([])
        let ids = [queued[0].envelope.id]
        #expect(
            try await Self.finishesWhileHeld(store, bob.address) {
                let result = try await store.ack([(bob.address, ids)])
                removed.withLockedValue { $0 = result }
            })
        #expect(removed.withLockedValue { $0 } == [1])
        #expect(try await store.pending(bob.address, afterSeq: 0, limit: 10).map(\.envelope.id) == [queued[1].envelope.id])
        #expect(try await store.totalQueued() == 1)
    }

    /// Alice's device row is held by a send batch to alice; alice's own send to carol (no copy for alice's
    /// devices) goes through at once (her row is only key-share locked: `aRemovedDeviceCannotSend` covers removal).
    @Test func aSendDoesNotWaitForASendToItsSender() async throws {
        let store = try await PostgresFailureTests.store()
        defer { TestBackend.closeLater(store) }
        let alice = try await StoreBackendTests.account(store, "alice")[0]
        let carol = try await StoreBackendTests.account(store, "carol")[0]
        let submission = try await StoreBackendTests.direct(store, from: alice, to: carol.account)
        let accepted = NIOLockedValueBox(false)
        #expect(
            try await Self.finishesWhileHeld(store, alice.address) {
                let result = try await StoreBackendTests.commitOne(store, submission)
                accepted.withLockedValue { $0 = result.failure == nil }
            })
        #expect(accepted.withLockedValue { $0 })
        #expect(try await store.pending(carol.address, afterSeq: 0, limit: 10).count == 1)
    }

    /// Acks add to `queue_release`/`queue_share_release`; queue caps count them at once; the expiry sweep folds them
    /// into the device's counters and the sender's share, deleting a share that reached zero.
    @Test func releasedRoomCountsAtOnceAndIsFoldedBySweeps() async throws {
        let store = try await PostgresFailureTests.store()
        defer { TestBackend.closeLater(store) }
        var limits = RelayLimits()
        limits.maxQueuedMessagesPerDevice = 3
        let alice = try await StoreBackendTests.account(store, "alice")[0]
        let bob = try await StoreBackendTests.account(store, "bob")[0]
        var batch: [MessageSubmission] = []
        for _ in 0..<3 { batch.append(try await StoreBackendTests.direct(store, from: alice, to: bob.account)) }
        #expect(try await store.commit(batch, limits: limits).allSatisfy { $0.failure == nil })
        let queued = try await store.pending(bob.address, afterSeq: 0, limit: 10)
        #expect(try await store.ack([(bob.address, queued.prefix(2).map(\.envelope.id))]) == [2])
        #expect(try await Self.counters(store, bob) == Counters(device: 3, released: 2, share: 3, shareReleased: 2))
        #expect(try await store.totalQueued() == 1)
        // Room for two more, not three, before any sweep.
        var more: [MessageSubmission] = []
        for _ in 0..<3 { more.append(try await StoreBackendTests.direct(store, from: alice, to: bob.account)) }
        #expect(try await store.commit(more, limits: limits).map { $0.failure == nil } == [true, true, false])

        #expect(try await store.deleteExpired(now: 3_000).expiredMessages == 0)
        #expect(try await Self.counters(store, bob) == Counters(device: 3, released: nil, share: 3, shareReleased: nil))
        let all = try await store.pending(bob.address, afterSeq: 0, limit: 10)
        #expect(try await store.ack([(bob.address, all.map(\.envelope.id))]) == [3])
        #expect(try await store.totalQueued() == 0)
        _ = try await store.deleteExpired(now: 3_000)
        #expect(try await Self.counters(store, bob) == Counters(device: 0, released: nil, share: nil, shareReleased: nil))
        #expect(try await StoreBackendTests.commitOne(
            store, try await StoreBackendTests.direct(store, from: alice, to: bob.account), limits: limits).failure == nil)
    }

    struct Counters: Equatable {
        var device: Int64
        var released: Int64?
        var share: Int64?
        var shareReleased: Int64?
    }

    /// Bob's device counter, its release row, and the share of every sender with its release row (nil: no row).
    static func counters(_ store: PostgresRelayStore, _ device: AuthenticatedDevice) async throws -> Counters {
        try await store.read { connection in
            func one(_ query: PostgresQuery) async throws -> Int64? {
                try await store.rows(connection, query).first?.decode(Int64.self)
            }
            let accountId = device.accountId
            let deviceId = Int64(device.deviceId)
            return Counters(
                device: try await one("SELECT queue_count FROM device WHERE account_id = \(accountId) AND device_id = \(deviceId)") ?? -1,
                released: try await one("SELECT count FROM queue_release WHERE account_id = \(accountId) AND device_id = \(deviceId)"),
                share: try await one("SELECT sum(count)::BIGINT FROM queue_share WHERE account_id = \(accountId) AND device_id = \(deviceId) HAVING count(*) > 0"),
                shareReleased: try await one(
                    "SELECT sum(count)::BIGINT FROM queue_share_release WHERE account_id = \(accountId) AND device_id = \(deviceId) HAVING count(*) > 0"))
        }
    }
}
