import Foundation
import ParleyFuzzTargets
import Testing

/// Every input kept under TestVectors/fuzz-regressions/<target>/ (crashes found by the fuzzers,
/// and seed inputs) replays through its target without tripping an invariant.
@Suite struct FuzzRegressionTests {
    @Test(arguments: FuzzTargets.names)
    func regressionInputsReplay(target: String) throws {
        let dir = repositoryRoot.appendingPathComponent("TestVectors/fuzz-regressions/\(target)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for file in files.sorted() {
            let data = try Data(contentsOf: dir.appendingPathComponent(file))
            FuzzTargets.run(target, Array(data))
        }
    }

    @Test func shortRandomInputsAreHandled() {
        var rng = SeededGenerator(state: 99)
        for target in FuzzTargets.names {
            for _ in 0..<300 {
                let length = Int.random(in: 0..<200, using: &rng)
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if !bytes.isEmpty && Bool.random(using: &rng) { bytes[0] = 0x33 }
                FuzzTargets.run(target, bytes)
            }
        }
    }
}
