import Foundation

/// The conformance runner's contract (Specs/test-vectors.md): every vector in the given files
/// and folders is run; one line each, `PASS name` or `FAIL name: what differed`; last
/// `N passed, N failed`. A vector of an unknown kind fails.
public struct ConformanceRunner {
    public struct Outcome: Sendable {
        public let name: String
        public let failure: String?
        public var passed: Bool { failure == nil }

        public var line: String { failure.map { "FAIL \(name): \($0)" } ?? "PASS \(name)" }
    }

    public init() {}

    /// The vector files below `paths` (a folder contributes every `*.json` below it except
    /// `index.json`, and every NIST KAT response file `*.rsp`), sorted for a stable order.
    public func files(in paths: [String]) -> (files: [String], missing: [String]) {
        var files: [String] = []
        var missing: [String] = []
        let fm = FileManager.default
        for path in paths {
            let path = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
                missing.append(path)
                continue
            }
            if isDirectory.boolValue {
                let root = URL(fileURLWithPath: path)
                let found = (fm.enumerator(atPath: path)?.allObjects as? [String] ?? [])
                    .filter { ($0.hasSuffix(".json") && ($0 as NSString).lastPathComponent != "index.json") || $0.hasSuffix(".rsp") }
                    .sorted()
                files += found.map { root.appendingPathComponent($0).path }
            } else {
                files.append(path)
            }
        }
        return (files, missing)
    }

    /// Runs every vector under `paths`, calling `report` for each outcome as it completes.
    public func run(paths: [String], report: (Outcome) -> Void = { _ in }) -> [Outcome] {
        let (files, missing) = files(in: paths)
        var outcomes = missing.map { Outcome(name: $0, failure: "no such file or folder") }
        outcomes.forEach(report)
        for file in files {
            for outcome in run(file: file) {
                report(outcome)
                outcomes.append(outcome)
            }
        }
        return outcomes
    }

    /// Runs the vectors of one file (one for protocol vectors, one per case for primitive KATs).
    public func run(file: String) -> [Outcome] {
        let fileName = (file as NSString).lastPathComponent
        if fileName.hasSuffix(".rsp") { return KyberKATRunner.runResponseFile(file) }
        let vector: JSONValue
        do {
            vector = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            return [Outcome(name: fileName, failure: "cannot read vector file: \(error)")]
        }
        // A top-level array is a known-answer file in libcrux's format, one vector per entry.
        if vector.raw is [Any] { return KyberKATRunner.runLibcrux(fileName: fileName, entries: vector) }
        let name = (try? vector["name"].string()) ?? fileName
        let kind: String
        do { kind = try vector["kind"].string() } catch { return [Outcome(name: name, failure: "no kind")] }

        switch kind {
        case "session":
            return [outcome(name) { try SessionVectorRunner(vector: vector).run() }]
        case "group":
            return [outcome(name) { try GroupVectorRunner(vector: vector).run() }]
        case "sender_key":
            return [outcome(name) { try SenderKeyVectorRunner(vector: vector).run() }]
        case "kem":
            return [outcome(name) { try KEMVectorRunner(vector: vector).run() }]
        case _ where PrimitiveVectorRunner.kinds.contains(kind):
            guard let cases = try? vector["cases"].array(), !cases.isEmpty else {
                return [Outcome(name: name, failure: "no cases")]
            }
            return cases.enumerated().map { index, testCase in
                let caseName = (try? testCase["name"].string()) ?? "case\(index)"
                return outcome("\(name)/\(caseName)") { try PrimitiveVectorRunner(kind: kind, testCase: testCase).run() }
            }
        default:
            return [Outcome(name: name, failure: "unknown kind \"\(kind)\"")]
        }
    }

    private func outcome(_ name: String, _ body: () throws -> Void) -> Outcome {
        do {
            try body()
            return Outcome(name: name, failure: nil)
        } catch {
            return Outcome(name: name, failure: "\(error)")
        }
    }

    /// The closing line of the contract.
    public static func summary(_ outcomes: [Outcome]) -> String {
        let passed = outcomes.filter(\.passed).count
        return "\(passed) passed, \(outcomes.count - passed) failed"
    }
}
