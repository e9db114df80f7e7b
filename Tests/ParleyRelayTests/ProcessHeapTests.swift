import Testing

@testable import ParleyRelay

/// The heap is the process's: many relays in one process (tests, benchmarks, embedding) check it (and trim it when
/// worthwhile, `HeapTrimTests`) once per interval between them, not once each.
@Suite("Process heap trimming")
struct ProcessHeapTests {
    @Test(.enabled(if: ProcessHeap.canTrim)) func relaysInOneProcessShareOneCheckPerInterval() async {
        await ProcessHeap.trimIfDue(every: .zero)  // due whatever happened before: checks now
        let before = ProcessHeap.checks
        // Twenty relays' services waking at once within the interval: none checks again.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 { group.addTask { await ProcessHeap.trimIfDue(every: .seconds(3_600)) } }
        }
        #expect(ProcessHeap.checks == before)
        // Once the interval has passed for a caller, one check.
        await ProcessHeap.trimIfDue(every: .zero)
        #expect(ProcessHeap.checks == before + 1)
    }
}
