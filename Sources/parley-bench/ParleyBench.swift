import ArgumentParser
import ParleyCryptoBench

@main
struct ParleyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-bench",
        abstract: "Parley benchmarks: throughput with latency percentiles and ratios to targets. Build with -c release.",
        subcommands: [
            Crypto.self, RelayThroughput.self, RelayLatency.self, RelayFanout.self, RelayIdle.self, RelayIdleClient.self,
            RelayAbuse.self, RelayAbuseSlowloris.self, ClientGroupSend.self, KEMBench.self, ClientStore.self,
        ])
}
