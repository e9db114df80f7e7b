import Foundation

/// A token bucket: `capacity` tokens, refilled at `ratePerSecond`.
struct TokenBucket: Sendable {
    let capacity: Double
    let ratePerSecond: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(capacity: Double, ratePerSecond: Double) {
        self.capacity = capacity
        self.ratePerSecond = ratePerSecond
        self.tokens = capacity
        self.last = .now
    }

    /// Takes one token if available.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = last.duration(to: now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + seconds * ratePerSecond)
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Token buckets keyed by requester (e.g. `account.deviceId`).
actor RateLimiter {
    private let capacity: Double
    private let ratePerSecond: Double
    private var buckets: [String: TokenBucket] = [:]

    init(capacity: Int, ratePerSecond: Double) {
        self.capacity = Double(capacity)
        self.ratePerSecond = ratePerSecond
    }

    func allow(_ key: String) -> Bool {
        var bucket = buckets[key] ?? TokenBucket(capacity: capacity, ratePerSecond: ratePerSecond)
        let allowed = bucket.take()
        buckets[key] = bucket
        if buckets.count > 100_000 { buckets.removeAll(keepingCapacity: true) }
        return allowed
    }
}
