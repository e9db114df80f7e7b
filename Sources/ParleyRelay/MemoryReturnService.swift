import Dispatch
import NIOConcurrencyHelpers
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Gives freed heap memory back to the operating system periodically. glibc's allocator keeps what was freed in
/// its arenas: after a burst (large request bodies, a flood of connections, a backlog written to many devices)
/// the relay's resident memory would otherwise stay at its peak although the memory is free. `malloc_trim`
/// returns the free pages, every `interval`.
///
/// The heap belongs to the process, not to a relay: however many relays run in one process (tests, benchmarks,
/// embedding), the heap is trimmed at most once per `interval` (`ProcessHeap`), and never on a thread of Swift's
/// cooperative pool (a trim walks every arena under its lock; on a large heap it takes long enough to stall the
/// tasks queued behind it: a test process with a hundred relays, each trimming on the pool, stalled for seconds).
struct MemoryReturnService: Service {
    /// How often free heap memory is returned.
    static let interval: Duration = .seconds(30)

    func run() async throws {
        guard ProcessHeap.canTrim else { return }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                await ProcessHeap.trimIfDue(every: Self.interval)
            }
        }
    }
}

/// The process's heap, trimmed by whichever relay's service asks first once an interval has passed.
enum ProcessHeap {
    private static let lastTrim = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    private static let trimCount = NIOLockedValueBox(0)
    private static let queue = DispatchQueue(label: "parley.relay.malloc-trim")

    static var canTrim: Bool { mallocTrim != nil }

    /// How many trims this process has done.
    static var trims: Int { trimCount.withLockedValue { $0 } }

    /// Trims unless another caller did within the last `interval` (less a tenth, so that one relay alone trims
    /// on each of its wake-ups); returns once the trim has finished, on a thread of its own.
    static func trimIfDue(every interval: Duration) async {
        guard let trim = mallocTrim else { return }
        let now = ContinuousClock.now
        let due = lastTrim.withLockedValue { last -> Bool in
            if let last, now - last < interval * 0.9 { return false }
            last = now
            return true
        }
        guard due else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                _ = trim(0)
                trimCount.withLockedValue { $0 += 1 }
                continuation.resume()
            }
        }
    }

    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// glibc's `malloc_trim(pad)` (malloc.h is not in Swift's Glibc module); nil on another C library.
    private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
        return nil
        #endif
    }()
}
