import Foundation

/// `TestVectors/fuzz-regressions/<target>/outcomes.json`: the expected outcome of every input file
/// of a target, `{"file.bin": "rejected bad_mac", ...}`, or for an input whose expected outcome
/// needs a fix that is not in this tree yet, `{"file.bin": {"expected": "...", "knownIssue": "..."}}`.
public struct RegressionManifest: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var expected: String
        public var knownIssue: String?

        public init(expected: String, knownIssue: String? = nil) {
            self.expected = expected
            self.knownIssue = knownIssue
        }
    }

    public static let fileName = "outcomes.json"
    public var entries: [String: Entry]

    public init(entries: [String: Entry] = [:]) { self.entries = entries }

    /// Reads the manifest of `directory` (an empty one if there is none).
    public static func read(directory: URL) throws -> RegressionManifest {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return RegressionManifest() }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let map = object as? [String: Any] else { throw ManifestError.malformed(url.path) }
        var entries: [String: Entry] = [:]
        for (file, value) in map {
            if let expected = value as? String {
                entries[file] = Entry(expected: expected)
            } else if let object = value as? [String: Any], let expected = object["expected"] as? String {
                entries[file] = Entry(expected: expected, knownIssue: object["knownIssue"] as? String)
            } else {
                throw ManifestError.malformed("\(url.path): \(file)")
            }
        }
        return RegressionManifest(entries: entries)
    }

    public func write(directory: URL) throws {
        var map: [String: Any] = [:]
        for (file, entry) in entries {
            if let issue = entry.knownIssue {
                map[file] = ["expected": entry.expected, "knownIssue": issue]
            } else {
                map[file] = entry.expected
            }
        }
        let data = try JSONSerialization.data(withJSONObject: map, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (data + Data("\n".utf8)).write(to: directory.appendingPathComponent(Self.fileName))
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
