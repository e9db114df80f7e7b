import NIOConcurrencyHelpers
import ServiceLifecycle

/// The tasks that serve the relay's connections, kept outside Hummingbird's per-server task group.
///
/// Hummingbird runs each connection as a child of one discarding task group. Removing a finished child from a task
/// group walks the group's list of children (Swift 6.3): linear in the live connections, so a burst of closes in
/// random order is quadratic. Measured with a micro-benchmark on this machine: 10,000 children finishing in random
/// order take 0.3 s to be removed, 20,000 take 1.4 s, 40,000 take 9.7 s, all of it under the group's lock (no
/// connection is accepted meanwhile); in the relay-abuse soak, the second in which ~9,000 attacking connections
/// closed together stalled every honest message by 0.7-1.2 s. A node is designed for 50-100 K connections.
///
/// So `RelayChannel.handle` hands its work to `run` and returns at once (Hummingbird's group stays as small as the
/// connections being accepted), and the work runs in a task of its own, kept in a dictionary (O(1) to add and remove).
/// `drain` waits for them at shutdown (`ConnectionDrainer`); cancelling the wait cancels them, as cancelling the
/// server cancelled its children.
final class ConnectionTasks: Sendable {
    private struct State {
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var next: UInt64 = 0
        var drained: [CheckedContinuation<Void, Never>] = []
        var cancelled = false
    }

    private let state = NIOLockedValueBox(State())

    /// Connections being served.
    var count: Int { state.withLockedValue { $0.tasks.count } }

    /// Serves a connection in a task of its own (task-local values, such as the graceful-shutdown handler, are
    /// inherited from the caller).
    func run(_ body: @escaping @Sendable () async -> Void) {
        state.withLockedValue { state in
            let id = state.next
            state.next &+= 1
            // Created under the lock: the task's `finished` waits for it, so the entry exists when it is removed.
            let task = Task {
                await body()
                self.finished(id)
            }
            state.tasks[id] = task
            if state.cancelled { task.cancel() }
        }
    }

    private func finished(_ id: UInt64) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.tasks[id] = nil
            guard state.tasks.isEmpty else { return [] }
            defer { state.drained = [] }
            return state.drained
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no connection is being served. Cancelled, it cancels every connection's task (and those started
    /// afterwards) and still waits for them to end.
    func drain() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLockedValue { state -> Bool in
                    if state.tasks.isEmpty { return true }
                    state.drained.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            let tasks = state.withLockedValue { state -> [Task<Void, Never>] in
                state.cancelled = true
                return Array(state.tasks.values)
            }
            for task in tasks { task.cancel() }
        }
    }
}

/// Waits, at shutdown, for the connections `ConnectionTasks` serves: placed before the HTTP server in the service
/// group, it stops after it (services stop in reverse order), so the store is not closed under a request still being
/// answered.
struct ConnectionDrainer: Service {
    let tasks: ConnectionTasks

    func run() async throws {
        try? await gracefulShutdown()
        await tasks.drain()
    }
}
