import Foundation
import NIOConcurrencyHelpers

/// A token bucket: `capacity` tokens, refilled at `ratePerSecond`.
struct TokenBucket: Sendable {
    let capacity: Double
    let ratePerSecond: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(capacity: Double, ratePerSecond: Double, now: ContinuousClock.Instant = .now) {
        self.capacity = capacity
        self.ratePerSecond = ratePerSecond
        self.tokens = capacity
        self.last = now
    }

    /// Takes one token if available.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        take(1, now: now) == nil
    }

    /// Takes `count` tokens if all are available; otherwise takes none and returns how long until they are
    /// (nil when taken). Asking for more than `capacity` can never succeed: the wait is then `.infinity`-like
    /// (the caller should refuse the request as too large instead).
    mutating func take(_ count: Double, now: ContinuousClock.Instant = .now) -> Duration? {
        refill(now)
        guard tokens < count else {
            tokens -= count
            return nil
        }
        guard count <= capacity, ratePerSecond > 0 else { return .seconds(Int64.max / 2) }
        return .seconds((count - tokens) / ratePerSecond)
    }

    /// Whether the bucket is full at `now`: it then behaves exactly like a new one, and can be forgotten.
    mutating func isFull(now: ContinuousClock.Instant) -> Bool {
        refill(now)
        return tokens >= capacity
    }

    private mutating func refill(_ now: ContinuousClock.Instant) {
        guard now > last else { return }
        let elapsed = last.duration(to: now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + seconds * ratePerSecond)
        last = now
    }
}

/// Token buckets keyed by requester (a device, a peer address, a push origin...), at most `maxKeys` of them.
///
/// When a new key would exceed `maxKeys`, the least recently used bucket is evicted, after the full ones (a
/// full bucket is the same as no bucket: forgetting it changes no limit). So many new keys (say, many IPv6
/// addresses) push out idle buckets one at a time; they never reset everyone's limits at once. Synchronous and
/// lock-protected: callable from event loops and inside store transactions.
final class RateLimiter: Sendable {
    /// Buckets kept per limiter (a bucket and its key take ~120 bytes: ~12 MB at most per limiter).
    static let defaultMaxKeys = 100_000

    let capacity: Double
    let ratePerSecond: Double
    let maxKeys: Int
    private let state: NIOLockedValueBox<LRUBuckets>

    init(capacity: Int, ratePerSecond: Double, maxKeys: Int = RateLimiter.defaultMaxKeys) {
        self.capacity = Double(capacity)
        self.ratePerSecond = ratePerSecond
        self.maxKeys = max(1, maxKeys)
        self.state = NIOLockedValueBox(LRUBuckets())
    }

    /// Takes one token of `key`'s bucket if available.
    func allow(_ key: String, now: ContinuousClock.Instant = .now) -> Bool {
        take(key, count: 1, now: now) == nil
    }

    /// Takes `count` tokens of `key`'s bucket if all are available (nil); otherwise none, and returns the wait
    /// until they are.
    func take(_ key: String, count: Int, now: ContinuousClock.Instant = .now) -> Duration? {
        let capacity = self.capacity
        let rate = self.ratePerSecond
        let maxKeys = self.maxKeys
        return state.withLockedValue { buckets in
            buckets.update(key, maxKeys: maxKeys, now: now, make: { TokenBucket(capacity: capacity, ratePerSecond: rate, now: now) }) {
                $0.take(Double(count), now: now)
            }
        }
    }

    /// Number of buckets held (for tests and metrics).
    var count: Int { state.withLockedValue { $0.count } }
}

/// Buckets in a least-recently-used list: slots in arrays linked by index (no allocation per use), a
/// dictionary from key to slot.
private struct LRUBuckets {
    private var slots: [String: Int] = [:]
    private var keys: [String] = []
    private var buckets: [TokenBucket] = []
    private var previous: [Int] = []
    private var following: [Int] = []
    /// Most recently used slot, least recently used slot (-1: empty).
    private var head = -1
    private var tail = -1

    var count: Int { slots.count }

    mutating func update<R>(
        _ key: String, maxKeys: Int, now: ContinuousClock.Instant, make: () -> TokenBucket, _ body: (inout TokenBucket) -> R
    ) -> R {
        if let slot = slots[key] {
            moveToFront(slot)
            return body(&buckets[slot])
        }
        let slot: Int
        if slots.count >= maxKeys {
            slot = evict(now: now)
            slots[keys[slot]] = nil
            keys[slot] = key
            buckets[slot] = make()
        } else {
            slot = keys.count
            keys.append(key)
            buckets.append(make())
            previous.append(-1)
            following.append(-1)
        }
        slots[key] = slot
        linkAtFront(slot)
        return body(&buckets[slot])
    }

    /// Picks the slot to reuse: a full bucket among the least recently used few, else the least recently used.
    private mutating func evict(now: ContinuousClock.Instant) -> Int {
        var candidate = tail
        var looked = 0
        while candidate != -1, looked < 8 {
            if buckets[candidate].isFull(now: now) { break }
            candidate = previous[candidate]
            looked += 1
        }
        let slot = (candidate == -1 || looked == 8) ? tail : candidate
        unlink(slot)
        return slot
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        linkAtFront(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let before = previous[slot]
        let after = following[slot]
        if before != -1 { following[before] = after } else { head = after }
        if after != -1 { previous[after] = before } else { tail = before }
        previous[slot] = -1
        following[slot] = -1
    }

    private mutating func linkAtFront(_ slot: Int) {
        previous[slot] = -1
        following[slot] = head
        if head != -1 { previous[head] = slot }
        head = slot
        if tail == -1 { tail = slot }
    }
}
