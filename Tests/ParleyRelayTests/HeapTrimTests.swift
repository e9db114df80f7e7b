import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import ParleyRelay

/// The relay returns free heap memory to the system (`MemoryReturnService`) without stalling its work: the trim
/// runs on a thread of its own, and only once the resident memory beyond use has grown by the threshold since the
/// last trim. Before, `malloc_trim` ran every 30 s on Swift's cooperative pool whatever the heap held (68–81 ms
/// each with a 270 MiB heap under the `relay-abuse` soak, one of the pool's two threads blocked meanwhile).
@Suite("Returning free heap memory")
struct HeapTrimTests {
    /// A heap whose figures the test sets, and the trims asked of it (each: whether it ran inside a Swift task,
    /// i.e. on a thread of the cooperative pool).
    final class FakeHeap: Sendable {
        private let state = NIOLockedValueBox((resident: 0, inUse: 0, trims: [Bool]()))

        func set(resident: Int, inUse: Int) {
            state.withLockedValue {
                $0.resident = resident
                $0.inUse = inUse
            }
        }

        var trims: [Bool] { state.withLockedValue { $0.trims } }

        func trimmer(threshold: Int, returnsTo resident: Int? = nil) -> HeapTrimmer {
            HeapTrimmer(
                threshold: threshold,
                measure: { self.state.withLockedValue { HeapTrimmer.Measure(resident: $0.resident, inUse: $0.inUse) } },
                trim: {
                    let inTask = withUnsafeCurrentTask { $0 != nil }
                    self.state.withLockedValue {
                        $0.trims.append(inTask)
                        if let resident { $0.resident = resident }
                    }
                })
        }
    }

    @Test func trimsOnlyOnceTheMemoryBeyondUseHasGrownByTheThreshold() async {
        let mib = 1 << 20
        let heap = FakeHeap()
        let trimmer = heap.trimmer(threshold: 32 * mib)
        heap.set(resident: 100 * mib, inUse: 60 * mib)
        // The first check trims (the floor is not known yet): slack 40 MiB becomes the floor.
        #expect(await trimmer.trimIfWorthwhile() != nil)
        // Steady state: the relay reuses what it frees. No trim, however often it checks.
        for _ in 0..<5 { #expect(await trimmer.trimIfWorthwhile() == nil) }
        // The heap grows with use (connections opened): no memory to return.
        heap.set(resident: 300 * mib, inUse: 250 * mib)
        #expect(await trimmer.trimIfWorthwhile() == nil)
        // 31 MiB more beyond use: still below the threshold.
        heap.set(resident: 300 * mib, inUse: 229 * mib)
        #expect(await trimmer.trimIfWorthwhile() == nil)
        // The burst ends: 200 MiB freed but resident. Trimmed once.
        heap.set(resident: 300 * mib, inUse: 50 * mib)
        #expect(await trimmer.trimIfWorthwhile() != nil)
        #expect(heap.trims.count == 2)
    }

    @Test func theFloorIsWhatATrimLeaves() async {
        let mib = 1 << 20
        let heap = FakeHeap()
        // A trim that can only bring the resident set down to 90 MiB (code, stacks, partly used pages).
        let trimmer = heap.trimmer(threshold: 32 * mib, returnsTo: 90 * mib)
        heap.set(resident: 400 * mib, inUse: 50 * mib)
        let first = await trimmer.trimIfWorthwhile()
        #expect(first?.residentBefore == 400 * mib)
        #expect(first?.residentAfter == 90 * mib)
        // 40 MiB beyond use right after the trim is the floor: no trim again at 71 MiB, one at 72 MiB.
        heap.set(resident: 121 * mib, inUse: 50 * mib)
        #expect(await trimmer.trimIfWorthwhile() == nil)
        heap.set(resident: 122 * mib, inUse: 50 * mib)
        #expect(await trimmer.trimIfWorthwhile() != nil)
    }

    @Test func theTrimRunsOutsideSwiftTasks() async {
        let heap = FakeHeap()
        let trimmer = heap.trimmer(threshold: 1)
        heap.set(resident: 2, inUse: 1)
        // Called from a task, as the service does; the trim itself runs on a thread of its own, where no task runs
        // (a trim called directly from the service's task would see that task).
        #expect(withUnsafeCurrentTask { $0 != nil })
        #expect(await trimmer.trimIfWorthwhile() != nil)
        #expect(heap.trims == [false])
    }

    @Test func theProcessHeapIsMeasuredAndTrimmed() async throws {
        // The real C library (glibc here): figures that make sense, and a trim that returns fragmented free memory.
        let before = try #require(HeapTrimmer.measureProcess())
        #expect(before.resident > 0)
        #expect(before.inUse > 0)
        // 128 MiB in 16 KiB blocks, every other one freed: 64 MiB free and resident, that cannot merge into the
        // top of the heap (which free() returns by itself).
        let block = 16 * 1024
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<(128 << 20) / block {
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 16)
            pointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: block)
            blocks.append(pointer)
        }
        for index in stride(from: 0, to: blocks.count, by: 2) { blocks[index].deallocate() }
        let trimmer = HeapTrimmer(threshold: 0)
        let trim = try #require(await trimmer.trimIfWorthwhile())
        // Other tests of this process allocate meanwhile: only the direction is checked.
        #expect(trim.residentAfter < trim.residentBefore)
        for index in stride(from: 1, to: blocks.count, by: 2) { blocks[index].deallocate() }
    }
}
