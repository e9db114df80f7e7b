import Foundation
import ParleyFuzzTargets
import Testing

/// The fuzz regressions: every input kept under TestVectors/fuzz-regressions/<target>/ (the seed
/// corpus and the fuzzers' findings) has its expected outcome in that folder's outcomes.tsv,
/// and replaying it through its target gives exactly that outcome.
@Suite struct FuzzRegressionTests {
    static let root = repositoryRoot.appendingPathComponent("TestVectors/fuzz-regressions")

    @Test(arguments: FuzzTargets.names)
    func everyKeptInputHasItsExpectedOutcome(target: String) throws {
        let directory = Self.root.appendingPathComponent(target)
        let manifest = try RegressionManifest.read(directory: directory)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0 != RegressionManifest.fileName }.sorted()
        #expect(!files.isEmpty, "no inputs kept for \(target)")
        #expect(Set(files) == Set(manifest.entries.keys), "files and outcomes.tsv disagree for \(target)")
        for file in files {
            guard let entry = manifest.entries[file] else { continue }
            let outcome = FuzzTargets.run(target, Array(try Data(contentsOf: directory.appendingPathComponent(file))))
            if let issue = entry.knownIssue {
                // Expected to fail until the fix named there is merged; then this fails, and the
                // marker comes off (SeedCorpus, then `parley-fuzz make-seeds TestVectors/fuzz-regressions`).
                withKnownIssue(Comment(rawValue: issue)) {
                    #expect(outcome.matches(entry.expected), "\(target)/\(file): \(outcome)")
                }
            } else {
                #expect(outcome.matches(entry.expected), "\(target)/\(file): \(outcome), expected \(entry.expected)")
            }
        }
    }

    /// The committed seeds are exactly what the generator makes (it is deterministic, and the
    /// files were not edited by hand): `parley-fuzz make-seeds TestVectors/fuzz-regressions`.
    @Test func committedSeedsAreTheGeneratorsOutput() throws {
        let seeds = try SeedCorpus.make()
        #expect(Set(seeds.map(\.target)) == Set(FuzzTargets.names), "every target has seeds")
        for seed in seeds {
            let directory = Self.root.appendingPathComponent(seed.target)
            let committed = try? Data(contentsOf: directory.appendingPathComponent(seed.file))
            #expect(committed.map(Array.init) == seed.bytes, "\(seed.target)/\(seed.file) differs from the generator's")
            let entry = try RegressionManifest.read(directory: directory).entries[seed.file]
            #expect(entry == RegressionManifest.Entry(expected: seed.expected, knownIssue: seed.knownIssue), "\(seed.target)/\(seed.file)")
        }
        #expect(try SeedCorpus.make().map(\.bytes) == seeds.map(\.bytes), "the generator is deterministic")
    }

    /// Random short inputs (a smoke test beside the libFuzzer runs in CI): never a violation.
    @Test func shortRandomInputsBreakNoInvariant() {
        var rng = SeededGenerator(state: 99)
        for target in FuzzTargets.names {
            for _ in 0..<200 {
                let length = Int.random(in: 0..<200, using: &rng)
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if !bytes.isEmpty && Bool.random(using: &rng) { bytes[0] = 0x33 }
                let outcome = FuzzTargets.run(target, bytes)
                guard case .violation(let what) = outcome else { continue }
                if let issue = outcome.knownIssue {
                    withKnownIssue(Comment(rawValue: issue), isIntermittent: true) { Issue.record("\(target): \(what)") }
                } else {
                    // The input in hex, to keep it as a regression file.
                    Issue.record("\(target): \(what); input \(bytes.map { String(format: "%02x", $0) }.joined())")
                }
            }
        }
    }
}
