import Foundation

/// `TestVectors/fuzz-regressions/<target>/outcomes.tsv`: the expected outcome of every input file of
/// a target, one line each, sorted: `file<TAB>expected outcome`, and for an input whose expected
/// outcome needs a fix that is not in this tree yet, a third column naming it
/// (`FuzzTargets.knownIssues`). Not JSON: the conformance runner takes every .json under
/// TestVectors/ for a vector.
public struct RegressionManifest: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var expected: String
        public var knownIssue: String?

        public init(expected: String, knownIssue: String? = nil) {
            self.expected = expected
            self.knownIssue = knownIssue
        }
    }

    public static let fileName = "outcomes.tsv"
    public var entries: [String: Entry]

    public init(entries: [String: Entry] = [:]) { self.entries = entries }

    /// Reads the manifest of `directory` (an empty one if there is none).
    public static func read(directory: URL) throws -> RegressionManifest {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return RegressionManifest() }
        let text = try String(contentsOf: url, encoding: .utf8)
        var entries: [String: Entry] = [:]
        for line in text.split(separator: "\n") where !line.isEmpty {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard columns.count == 2 || columns.count == 3, !columns[0].isEmpty, !columns[1].isEmpty,
                entries[columns[0]] == nil
            else { throw ManifestError.malformed("\(url.path): \(line)") }
            entries[columns[0]] = Entry(expected: columns[1], knownIssue: columns.count == 3 ? columns[2] : nil)
        }
        return RegressionManifest(entries: entries)
    }

    public func write(directory: URL) throws {
        let lines = entries.keys.sorted().map { file -> String in
            guard let entry = entries[file] else { return "" }
            return ([file, entry.expected] + (entry.knownIssue.map { [$0] } ?? [])).joined(separator: "\t")
        }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent(Self.fileName))
    }

    public enum ManifestError: Error, Equatable {
        case malformed(String)
    }
}

/// Writes the seed corpus: each seed file, and its manifest entry merged into the target's
/// manifest (entries of other files, such as fuzzer findings, are kept).
public enum SeedWriter {
    public static func write(_ seeds: [FuzzSeed], to root: URL) throws -> Int {
        let byTarget = Dictionary(grouping: seeds, by: \.target)
        for (target, seeds) in byTarget {
            let directory = root.appendingPathComponent(target)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var manifest = try RegressionManifest.read(directory: directory)
            // Seeds the generator no longer makes are removed with their entries.
            for file in manifest.entries.keys where file.hasPrefix("seed-") && !seeds.contains(where: { $0.file == file }) {
                manifest.entries[file] = nil
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(file))
            }
            for seed in seeds {
                try Data(seed.bytes).write(to: directory.appendingPathComponent(seed.file))
                manifest.entries[seed.file] = RegressionManifest.Entry(expected: seed.expected, knownIssue: seed.knownIssue)
            }
            try manifest.write(directory: directory)
        }
        return seeds.count
    }
}
