import NIOConcurrencyHelpers
import Testing
@testable import ParleyRelay

/// `ConnectionTasks` serves connections outside Hummingbird's task group; what shutdown relies on: `drain` returns
/// only once every connection's task has ended, and a cancelled drain cancels them (as a forced stop cancelled the
/// server's children).
@Suite("Connection tasks")
struct ConnectionTasksTests {
    @Test func drainWaitsForEveryConnection() async {
        let tasks = ConnectionTasks()
        let gate = Gate()
        let finished = NIOLockedValueBox(0)
        for _ in 0..<100 {
            tasks.run {
                await gate.wait()
                finished.withLockedValue { $0 += 1 }
            }
        }
        #expect(tasks.count == 100)
        let drained = NIOLockedValueBox(false)
        let drainer = Task {
            await tasks.drain()
            drained.withLockedValue { $0 = true }
        }
        try? await Task.sleep(for: .milliseconds(50))
        #expect(!drained.withLockedValue { $0 }, "drain returned while connections were being served")
        gate.open()  // every connection ends
        await drainer.value
        #expect(finished.withLockedValue { $0 } == 100)
        #expect(tasks.count == 0)
        await tasks.drain()  // nothing left: returns at once
    }

    @Test func aCancelledDrainCancelsTheConnections() async {
        let tasks = ConnectionTasks()
        let cancelled = NIOLockedValueBox(0)
        for _ in 0..<50 {
            tasks.run {
                // A connection that ends only when its task is cancelled.
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(60)) }
                cancelled.withLockedValue { $0 += 1 }
            }
        }
        let drainer = Task { await tasks.drain() }
        try? await Task.sleep(for: .milliseconds(50))
        drainer.cancel()
        await drainer.value
        #expect(cancelled.withLockedValue { $0 } == 50)
        #expect(tasks.count == 0)
        // A connection accepted after the forced stop is cancelled at once.
        let late = NIOLockedValueBox(false)
        tasks.run { late.withLockedValue { $0 = Task.isCancelled } }
        await tasks.drain()
        #expect(late.withLockedValue { $0 })
    }
}

/// Holds callers until opened.
private final class Gate: Sendable {
    private let state = NIOLockedValueBox<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let open = state.withLockedValue { state -> Bool in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
