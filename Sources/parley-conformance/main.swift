import ArgumentParser
import ParleyConformance

@main
struct ParleyConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-conformance",
        abstract: "Replays Signal-protocol test vectors against Parley.",
        discussion: "Prints PASS/FAIL per vector and 'N passed, N failed'; exits 0 only when nothing failed.",
        subcommands: [Run.self, Interop.self],
        defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run vector files or folders.")

        @Argument(help: "Vector files, or folders (every *.json below them except index.json).")
        var paths: [String] = ["TestVectors"]

        func run() throws {
            let outcomes = ConformanceRunner().run(paths: paths) { print($0.line) }
            print(ConformanceRunner.summary(outcomes))
            if outcomes.isEmpty || outcomes.contains(where: { !$0.passed }) { throw ExitCode(1) }
        }
    }

    struct Interop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Speak the JSON-lines interop protocol on stdin/stdout (Specs/interop.md).")

        func run() throws {
            InteropPeer().serve()
        }
    }
}
