import Foundation

/// Wall-clock time in milliseconds since 1970 (UTC), as used in all stored and wire timestamps.
enum RelayClock {
    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
