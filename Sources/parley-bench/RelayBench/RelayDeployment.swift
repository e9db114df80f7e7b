import Foundation

/// The relay nodes a benchmark drives: one `parley-relay` (SQLite or PostgreSQL), several started on one PostgreSQL
/// database (`--database postgres://... --node-count N`), or running nodes (`--nodes URL,URL`). Devices and
/// requests are spread over the nodes by index (device i on node i mod N), so with two nodes every 1:1 message
/// of the throughput and latency modes (device i sends to device i+1) crosses from one node to the other.
final class RelayDeployment: Sendable {
    let nodes: [RelayTarget]

    init(nodes: [RelayTarget]) {
        precondition(!nodes.isEmpty)
        self.nodes = nodes
    }

    func node(_ index: Int) -> RelayTarget { nodes[index % nodes.count] }

    var baseURL: String { nodes[0].baseURL }
    var count: Int { nodes.count }

    /// Stops the nodes it started (SIGTERM, wait) and removes their temporary files.
    func stop() {
        for node in nodes { node.stop() }
    }

    /// CPU seconds of all nodes (nil unless every node's process id is known).
    func cpuSeconds() -> Double? {
        var total = 0.0
        for node in nodes {
            guard let seconds = node.cpuSeconds() else { return nil }
            total += seconds
        }
        return total
    }

    /// Resident memory of all nodes together (nil unless every node's process id is known).
    func residentBytes() -> Int? {
        var total = 0
        for node in nodes {
            guard let bytes = node.residentBytes() else { return nil }
            total += bytes
        }
        return total
    }

    func openFiles() -> Int? {
        var total = 0
        for node in nodes {
            guard let files = node.openFiles() else { return nil }
            total += files
        }
        return total
    }

    /// The nodes' Prometheus counters, summed.
    func metrics() async -> [String: Double] {
        var total: [String: Double] = [:]
        for node in nodes {
            for (name, value) in await node.metrics() { total[name, default: 0] += value }
        }
        return total
    }
}
