import Foundation
import ParleyFuzzTargets

#if PARLEY_FUZZ
/// libFuzzer build (tools/fuzz/run.sh): the target is chosen by PARLEY_FUZZ_TARGET.
nonisolated(unsafe) let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["PARLEY_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.target(named: name) else {
        fatalError("PARLEY_FUZZ_TARGET must name a target: \(FuzzTargets.names.joined(separator: " "))")
    }
    return target
}()

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Known issues (`FuzzTargets.knownIssues` tags, separated by ";") that do not stop the run while
/// their fix is pending elsewhere; each is reported once.
nonisolated(unsafe) let toleratedIssues: Set<String> = Set(
    (ProcessInfo.processInfo.environment["PARLEY_FUZZ_KNOWN_ISSUES"] ?? "").split(separator: ";").map(String.init))
nonisolated(unsafe) var reportedIssues: Set<String> = []

/// One input: an invariant violation is a finding, so it traps (libFuzzer saves the input).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let outcome = fuzzTarget.run(bytes)
    guard case .violation(let what) = outcome else { return 0 }
    if let issue = outcome.knownIssue, toleratedIssues.contains(issue) {
        if reportedIssues.insert(issue).inserted { print("known issue, tolerated: \(fuzzTarget.name): \(what)") }
        return 0
    }
    fatalError("\(fuzzTarget.name): \(what)")
}

/// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's
/// driver from there (its own `main` is then not linked).
@_cdecl("parley_fuzz_main")
func parleyFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    if ProcessInfo.processInfo.environment["PARLEY_FUZZ_LIST"] != nil {  // for tools/fuzz/run.sh
        for name in FuzzTargets.names { print(name) }
        return 0
    }
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzTestOneInput(data, size) }
}
#else
/// Without the fuzzer:
///   parley-fuzz TARGET FILE...     replays inputs through a target and prints each outcome (exit 1
///                                  on a violation), to reproduce a finding in a debugger
///   parley-fuzz make-seeds DIR     writes the seed corpus and its manifests under DIR/<target>/
///   parley-fuzz --list             lists the targets
@main
struct ParleyFuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        switch args.first {
        case "--list":
            for target in FuzzTargets.all { print("\(target.name)\t\(target.summary)") }
        case "make-seeds":
            guard args.count == 2 else { usage() }
            do {
                let written = try SeedWriter.write(try SeedCorpus.make(), to: URL(fileURLWithPath: args[1]))
                print("\(written) seed files written under \(args[1])")
            } catch {
                print("cannot write the seeds: \(error)")
                exit(1)
            }
        case let name? where FuzzTargets.target(named: name) != nil:
            var violations = 0
            for path in args.dropFirst() {
                guard let data = FileManager.default.contents(atPath: path) else {
                    print("cannot read \(path)")
                    exit(2)
                }
                let outcome = FuzzTargets.run(name, Array(data))
                if case .violation = outcome { violations += 1 }
                print("\(path): \(outcome)")
            }
            exit(violations == 0 ? 0 : 1)
        default:
            usage()
        }
    }

    static func usage() -> Never {
        print("usage: parley-fuzz TARGET FILE... | parley-fuzz make-seeds DIR | parley-fuzz --list")
        print("targets: \(FuzzTargets.names.joined(separator: " "))")
        exit(2)
    }
}
#endif
