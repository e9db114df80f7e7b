import Foundation

/// Where the store reads the time for `first_seen`, `updated_at` and `created_at` columns:
/// milliseconds since 1970 UTC. Tests inject a fixed or stepping clock.
public typealias StoreClock = @Sendable () -> Int64

/// The wall clock.
public enum SystemStoreClock {
    public static let now: StoreClock = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}
