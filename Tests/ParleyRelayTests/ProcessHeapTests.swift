import Testing

@testable import ParleyRelay

/// The heap is the process's: many relays in one process (tests, benchmarks, embedding) trim it once per interval
/// between them, not once each.
@Suite("Process heap trimming")
struct ProcessHeapTests {
    @Test(.enabled(if: ProcessHeap.canTrim)) func relaysInOneProcessShareOneTrimPerInterval() async {
        await ProcessHeap.trimIfDue(every: .zero)  // due whatever happened before: trims now
        let before = ProcessHeap.trims
        // Twenty relays' services waking at once within the interval: none trims again.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 { group.addTask { await ProcessHeap.trimIfDue(every: .seconds(3_600)) } }
        }
        #expect(ProcessHeap.trims == before)
        // Once the interval has passed for a caller, one trim.
        await ProcessHeap.trimIfDue(every: .zero)
        #expect(ProcessHeap.trims == before + 1)
    }
}
