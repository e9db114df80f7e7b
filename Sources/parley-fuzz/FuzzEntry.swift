import Foundation
import ParleyFuzzTargets

#if PARLEY_FUZZ
/// libFuzzer build (tools/fuzz/run.sh): the target is chosen by PARLEY_FUZZ_TARGET.
nonisolated(unsafe) let fuzzTarget: String = ProcessInfo.processInfo.environment["PARLEY_FUZZ_TARGET"] ?? "signal-message"

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    FuzzTargets.run(fuzzTarget, bytes)
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's
/// driver from there (its own `main` is then not linked).
@_cdecl("parley_fuzz_main")
func parleyFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzTestOneInput(data, size) }
}
#else
/// Without the fuzzer: `parley-fuzz TARGET FILE...` replays inputs through a target (to
/// reproduce a finding in a debugger or under valgrind).
@main
struct ParleyFuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let target = args.first, FuzzTargets.names.contains(target) else {
            print("usage: parley-fuzz TARGET FILE...   targets: \(FuzzTargets.names.joined(separator: " "))")
            exit(2)
        }
        for path in args.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("cannot read \(path)")
                exit(2)
            }
            FuzzTargets.run(target, Array(data))
            print("ok \(path)")
        }
    }
}
#endif
