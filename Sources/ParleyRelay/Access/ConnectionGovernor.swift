import NIOConcurrencyHelpers
import NIOCore
import Prometheus

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Accounts for every TCP connection of the relay's public listener (each holds a file descriptor), so that
/// neither one peer nor many can take them all (issue 9, slowloris):
///
/// * one peer (an IPv4 address, or an IPv6 /64) holds at most `RelayLimits.maxConnectionsPerAddress`; a
///   connection beyond it is closed at once;
/// * all peers together hold at most `capacity` (by default the open-file limit minus a reserve, see
///   `RelayLimits.connectionCapacity`). At the cap, a new connection closes the oldest connection that is not a
///   device session of the peer that holds the most such connections, so that connections that hold a
///   descriptor without an account (a request head that never completes, an idle keep-alive) cannot lock
///   honest clients out: an attacker's own connections go first, however fast it opens new ones. If every
///   connection is a session, the new one is closed.
///
/// Device sessions need an account and its credentials; they are bounded by the cap and by the per-address
/// limit only.
final class ConnectionGovernor: Sendable {
    /// Why a connection was refused.
    enum Refusal: Error, Sendable {
        /// Its peer address holds `maxConnectionsPerAddress` already.
        case address
        /// The relay holds `capacity` connections, all of them device sessions.
        case capacity
    }

    /// A peer, as counted: an IPv4 address, an IPv6 /64 prefix, or anything else (one bucket).
    enum Peer: Hashable, Sendable {
        case v4(UInt32)
        case v6Prefix(UInt64)
        case other

        init(_ address: SocketAddress?) {
            switch address {
            case .v4(let v4):
                self = .v4(UInt32(bigEndian: v4.address.sin_addr.s_addr))
            case .v6(let v6):
                let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
                if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                    // IPv4-mapped (::ffff:a.b.c.d): the IPv4 peer.
                    self = .v4(bytes[12..<16].reduce(0) { $0 << 8 | UInt32($1) })
                } else {
                    self = .v6Prefix(bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) })
                }
            default:
                self = .other
            }
        }
    }

    private struct Entry {
        let peer: Peer
        let channel: any Channel
        /// False once the connection became a device session.
        var evictable = true
        /// Told to close; no longer counted against the cap.
        var evicted = false
    }

    /// One peer's evictable connections, oldest first from `head` on (ids of connections that closed, were
    /// evicted or became sessions are skipped when met).
    private struct PeerQueue {
        var ids: [UInt64] = []
        var head = 0
        /// Evictable connections of the peer.
        var live = 0
    }

    private struct State {
        var nextId: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        /// Open connections per peer (the per-address limit).
        var perPeer: [Peer: Int] = [:]
        /// Connections counted against the cap (entries not evicted).
        var counted = 0
        var queues: [Peer: PeerQueue] = [:]
        /// Peers by their number of evictable connections (> 0), and the largest such number: eviction takes
        /// from a peer holding the most, in O(1).
        var byLive: [Int: Set<Peer>] = [:]
        var maxLive = 0

        /// Moves `peer` from the bucket of `old` evictable connections to that of `new`.
        mutating func rebucket(_ peer: Peer, from old: Int, to new: Int) {
            if old > 0 {
                byLive[old]?.remove(peer)
                if byLive[old]?.isEmpty == true { byLive[old] = nil }
            }
            if new > 0 { byLive[new, default: []].insert(peer) }
            if new > maxLive { maxLive = new }
            while maxLive > 0, byLive[maxLive] == nil { maxLive -= 1 }
        }

        mutating func addEvictable(_ id: UInt64, _ peer: Peer) {
            var queue = queues[peer] ?? PeerQueue()
            queue.ids.append(id)
            queue.live += 1
            queues[peer] = queue
            rebucket(peer, from: queue.live - 1, to: queue.live)
        }

        /// One of the peer's evictable connections closed, was evicted or became a session.
        mutating func dropEvictable(_ peer: Peer) {
            guard var queue = queues[peer] else { return }
            queue.live -= 1
            rebucket(peer, from: queue.live + 1, to: queue.live)
            let queued = queue.ids.count - queue.head
            if queue.live == 0 {
                queues[peer] = nil
                return
            }
            if queue.head >= 64, queue.head >= queued {
                queue.ids.removeFirst(queue.head)
                queue.head = 0
            } else if queued > 2 * queue.live + 64 {
                queue.ids = queue.ids[queue.head...].filter { entries[$0]?.evictable == true && entries[$0]?.evicted == false }
                queue.head = 0
            }
            queues[peer] = queue
        }

        /// Takes the oldest evictable connection of a peer that holds the most out of the count; its channel,
        /// to be closed.
        mutating func evict() -> (any Channel)? {
            guard maxLive > 0, let peer = byLive[maxLive]?.first, var queue = queues[peer] else { return nil }
            while queue.head < queue.ids.count {
                let id = queue.ids[queue.head]
                queue.head += 1
                guard var entry = entries[id], entry.evictable, !entry.evicted else { continue }
                entry.evicted = true
                entries[id] = entry
                counted -= 1
                queues[peer] = queue
                dropEvictable(peer)
                return entry.channel
            }
            return nil  // unreachable while `live` is exact
        }
    }

    /// Why the relay closed a connection on a deadline.
    enum Timeout: String, Sendable, CaseIterable {
        /// The first request head was not complete within `firstRequestTimeoutSeconds`.
        case head
        /// A request body fell below `minRequestBodyBytesPerSecond`.
        case body
        /// The socket stayed unwritable for `unwritableTimeoutSeconds`.
        case unwritable
        /// A WebSocket did not answer the relay's ping.
        case ping
    }

    let capacity: Int
    let maxPerAddress: Int
    private let state = NIOLockedValueBox(State())
    private let open: Gauge
    private let refusedAddress: Counter
    private let refusedCapacity: Counter
    private let evictions: Counter
    private let timeouts: [Timeout: Counter]

    init(capacity: Int, maxPerAddress: Int, registry: PrometheusCollectorRegistry) {
        self.capacity = capacity
        self.maxPerAddress = maxPerAddress
        open = registry.makeGauge(
            name: "parley_relay_tcp_connections", help: "Open TCP connections of the public listener (any kind)")
        let refused = "parley_relay_connections_refused_total"
        let refusedHelp = "Connections closed at accept: their address holds its share, or every slot is a device session"
        refusedAddress = registry.makeCounter(name: refused, labels: [("reason", "address")], help: refusedHelp)
        refusedCapacity = registry.makeCounter(name: refused, labels: [("reason", "capacity")], help: refusedHelp)
        evictions = registry.makeCounter(
            name: "parley_relay_connections_evicted_total",
            help: "Connections that were not device sessions, closed to make room at the connection cap")
        var timeouts: [Timeout: Counter] = [:]
        for timeout in Timeout.allCases {
            timeouts[timeout] = registry.makeCounter(
                name: "parley_relay_connections_timed_out_total", labels: [("deadline", timeout.rawValue)],
                help: "Connections closed on a deadline (request head, body rate, unwritable socket, WebSocket ping)")
        }
        self.timeouts = timeouts
    }

    /// Counts a connection closed on a deadline.
    func timedOut(_ timeout: Timeout) {
        timeouts[timeout]?.increment()
    }

    /// The cap for this process: `configured`, else derived from the open-file limit.
    static func capacity(configured: Int?) -> Int {
        if let configured { return max(1, configured) }
        var limit = rlimit()
        // An unlimited (RLIM_INFINITY, all ones) or huge limit: a million connections.
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < 1 << 40 else { return 1_000_000 }
        return RelayLimits.connectionCapacity(openFileLimit: Int(limit.rlim_cur))
    }

    /// Counts a new connection (at accept), or refuses it; an admitted one is uncounted when it closes.
    /// Returns its id (for `becameSession`).
    func admit(_ channel: any Channel) -> Result<UInt64, Refusal> {
        let peer = Peer(channel.remoteAddress)
        let outcome = state.withLockedValue { state -> (Result<UInt64, Refusal>, (any Channel)?) in
            guard state.perPeer[peer, default: 0] < maxPerAddress else { return (.failure(.address), nil) }
            var evicted: (any Channel)?
            if state.counted >= capacity {
                evicted = state.evict()
                guard evicted != nil else { return (.failure(.capacity), nil) }
            }
            let id = state.nextId
            state.nextId += 1
            state.entries[id] = Entry(peer: peer, channel: channel)
            state.perPeer[peer, default: 0] += 1
            state.counted += 1
            state.addEvictable(id, peer)
            return (.success(id), evicted)
        }
        let (result, evicted) = outcome
        switch result {
        case .success(let id):
            if let evicted {
                evictions.increment()
                evicted.close(promise: nil)
            }
            open.increment()
            channel.closeFuture.whenComplete { _ in self.release(id) }
        case .failure(.address):
            refusedAddress.increment()
        case .failure(.capacity):
            refusedCapacity.increment()
        }
        return result
    }

    /// The connection became a device session: it is no longer closed to make room.
    func becameSession(_ id: UInt64) {
        state.withLockedValue { state in
            guard var entry = state.entries[id], entry.evictable, !entry.evicted else { return }
            entry.evictable = false
            state.entries[id] = entry
            state.dropEvictable(entry.peer)
        }
    }

    private func release(_ id: UInt64) {
        state.withLockedValue { state in
            guard let entry = state.entries.removeValue(forKey: id) else { return }
            if !entry.evicted {
                state.counted -= 1
                if entry.evictable { state.dropEvictable(entry.peer) }
            }
            if let count = state.perPeer[entry.peer], count > 1 {
                state.perPeer[entry.peer] = count - 1
            } else {
                state.perPeer[entry.peer] = nil
            }
        }
        open.decrement()
    }

    /// Connections counted against the cap.
    var count: Int { state.withLockedValue { $0.counted } }
}
