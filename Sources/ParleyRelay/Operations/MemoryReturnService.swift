import CParleyHeap
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Gives freed heap memory back to the operating system. glibc's allocator keeps what was freed in its arenas:
/// after a burst (large request bodies, a flood of connections, a backlog written to many devices) the relay's
/// resident memory would otherwise stay at its peak although the memory is free.
///
/// `malloc_trim` holds each arena's lock while it returns that arena's free pages, and on a large fragmented heap
/// it works for tens of milliseconds (p50 78 ms, up to 300 ms, in the 600 s `relay-abuse` soak on main): every
/// thread that allocates from, or frees into, the arena being trimmed waits for it, an event loop among them. It
/// used to run every 30 s on Swift's cooperative pool, in every relay of a process. Now
/// * the heap is the process's: however many relays run in one process (tests, benchmarks, embedding), it is
///   checked at most once per `interval` (`ProcessHeap`);
/// * a check trims only when the process holds at least `HeapTrimmer.thresholdBytes` more resident memory than
///   its heap has in use, beyond what it held just after the last trim (`HeapTrimmer`): a relay in steady state,
///   which reuses what it frees, only pays the check (a walk of the allocator's free lists, no system call), and a
///   trim comes after a burst has ended or while a flood keeps leaving memory behind;
/// * the check and the trim run on a thread of their own, never on the cooperative pool (one thread per core: a
///   trim there also held up every task queued behind it, commits, their answers, deliveries).
struct MemoryReturnService: Service {
    /// How often the resident free memory is checked (and returned when there is enough of it).
    static let interval: Duration = .seconds(30)

    let logger: Logger

    func run() async throws {
        guard ProcessHeap.canTrim else { return }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                if let trim = await ProcessHeap.trimIfDue(every: Self.interval) {
                    logger.debug(
                        "returned free heap memory",
                        metadata: [
                            "resident_mib_before": "\(trim.residentBefore >> 20)", "resident_mib_after": "\(trim.residentAfter >> 20)",
                            "duration": "\(trim.duration)",
                        ])
                }
            }
        }
    }
}

/// The process's heap, checked by whichever relay's service asks first once an interval has passed.
enum ProcessHeap {
    private static let lastCheck = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    private static let counts = NIOLockedValueBox((checks: 0, trims: 0))
    private static let trimmer = HeapTrimmer()

    /// Whether the C library says what its heap holds (glibc).
    static var canTrim: Bool { HeapTrimmer.measureProcess() != nil }

    /// How many checks this process has done.
    static var checks: Int { counts.withLockedValue { $0.checks } }

    /// How many of them trimmed.
    static var trims: Int { counts.withLockedValue { $0.trims } }

    /// Checks (and trims when worthwhile) unless another caller did within the last `interval` (less a tenth, so
    /// that one relay alone checks on each of its wake-ups); returns once done, the trim if there was one.
    @discardableResult
    static func trimIfDue(every interval: Duration) async -> HeapTrimmer.Trim? {
        let now = ContinuousClock.now
        let due = lastCheck.withLockedValue { last -> Bool in
            if let last, now - last < interval * 0.9 { return false }
            last = now
            return true
        }
        guard due else { return nil }
        let trim = await trimmer.trimIfWorthwhile()
        counts.withLockedValue {
            $0.checks += 1
            if trim != nil { $0.trims += 1 }
        }
        return trim
    }
}

/// Decides when to trim the C allocator's heap, and trims on a thread of its own.
///
/// The measure is the resident memory that the heap does not account as in use (`slack`: the process's resident
/// set minus the heap's allocated bytes; it also counts code, thread stacks and pages a trim cannot return). Right
/// after a trim it is at its floor; a trim is due once it exceeds the floor by `thresholdBytes`.
final class HeapTrimmer: Sendable {
    /// Resident memory beyond use below this is left to the allocator, which reuses it for the next allocations:
    /// returning it would cost a trim (arena locks held) now and page faults later. 32 MiB is 5–10 % of what the
    /// relay holds under the `relay-abuse` soak and below its resident memory at rest (~50 MiB): what stays held
    /// after a burst is bounded by it.
    static let thresholdBytes = 32 << 20

    struct Trim: Sendable {
        let residentBefore: Int
        let residentAfter: Int
        let duration: Duration
    }

    /// The process's resident memory and the heap's allocated bytes.
    struct Measure: Sendable {
        let resident: Int
        let inUse: Int
    }

    private let threshold: Int
    private let measure: @Sendable () -> Measure?
    private let trim: @Sendable () -> Void
    /// Slack right after the last trim (nil before the first check).
    private let floor = NIOLockedValueBox<Int?>(nil)

    /// `measure` and `trim` are the C library's unless a test replaces them.
    init(
        threshold: Int = HeapTrimmer.thresholdBytes, measure: @escaping @Sendable () -> Measure? = { HeapTrimmer.measureProcess() },
        trim: @escaping @Sendable () -> Void = { _ = parley_heap_trim() }
    ) {
        self.threshold = threshold
        self.measure = measure
        self.trim = trim
    }

    /// Checks, and trims when due, on a new thread (named `parley-relay-heap-trim`); the caller waits suspended.
    /// Returns the trim, if there was one.
    func trimIfWorthwhile() async -> Trim? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Trim?, Never>) in
            let thread = Thread {
                Thread.current.name = Self.threadName
                continuation.resume(returning: self.checkAndTrim())
            }
            thread.start()
        }
    }

    static let threadName = "parley-relay-heap-trim"

    /// The check and the trim, on the calling thread. Nil when no trim was due, or the C library says nothing.
    func checkAndTrim() -> Trim? {
        guard let before = measure() else { return nil }
        let slack = before.resident - before.inUse
        let due = floor.withLockedValue { floor -> Bool in
            // The first check trims: the floor is not known yet.
            guard let known = floor else { return true }
            if slack < known { floor = slack }
            return slack >= known + threshold
        }
        guard due else { return nil }
        let clock = ContinuousClock()
        let start = clock.now
        trim()
        let duration = clock.now - start
        let after = measure() ?? before
        floor.withLockedValue { $0 = after.resident - after.inUse }
        return Trim(residentBefore: before.resident, residentAfter: after.resident, duration: duration)
    }

    /// This process's resident set and the C heap's allocated bytes; nil where the C library does not say (not glibc).
    static func measureProcess() -> Measure? {
        guard let resident = residentBytes() else { return nil }
        let inUse = Int(parley_heap_in_use_bytes())
        guard inUse > 0 else { return nil }
        return Measure(resident: resident, inUse: inUse)
    }

    /// This process's resident set, bytes (from /proc/self/statm); nil where there is no such file.
    static func residentBytes() -> Int? {
        #if canImport(Glibc)
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        // "size resident shared text lib data dt", in pages.
        let fields = buffer[0..<count].split(separator: UInt8(ascii: " "))
        guard fields.count >= 2, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * sysconf(Int32(_SC_PAGESIZE))
        #else
        return nil
        #endif
    }
}
