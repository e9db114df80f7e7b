import Dispatch
import Foundation
import ParleyCrypto

/// Account recovery codes: 128 random bits made at registration (and at each recovery), shown to the
/// client once, kept by the relay only as an Argon2id hash (libsodium's string form, salt included).
enum RecoveryCode {
    /// Random bytes of a code: 128 bits, beyond any guessing even without the rate limits.
    static let randomBytes = 16
    /// Argon2id passes. With `memLimit`, OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1). The code is
    /// 128 random bits, so a stolen database gives no practical offline attack even with a fast hash; the
    /// slow salted hash makes each guess cost such an attacker two passes over 19 MiB besides. A harder setting
    /// would buy nothing for a random code but would be paid on every registration (Specs/relay-protocol.md
    /// gives the time here) and would multiply the memory of concurrent checks (`maxConcurrentHashes`).
    static let opsLimit: UInt64 = 2
    /// Argon2id memory: 19 MiB (see `opsLimit`).
    static let memLimit = 19 * 1024 * 1024
    /// Argon2id computations at once per relay process (each holds `memLimit`): the rest wait their turn, so a
    /// burst of registrations or recoveries costs at most 4 × 19 MiB.
    static let maxConcurrentHashes = 4

    /// A new code: 8 groups of 4 lowercase hexadecimal digits separated by dashes.
    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(randomBytes)
        while bytes.count < randomBytes {
            withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
        }
        let hex = bytes.prefix(randomBytes).map { String(format: "%02x", $0) }.joined()
        let characters = Array(hex)
        return stride(from: 0, to: characters.count, by: 4).map { String(characters[$0..<$0 + 4]) }.joined(separator: "-")
    }

    /// The canonical form of a typed code (32 lowercase hexadecimal digits; dashes and spaces dropped), or nil
    /// when it cannot be a code.
    static func normalize(_ typed: String) -> String? {
        guard typed.utf8.count <= 128 else { return nil }
        let digits = typed.lowercased().filter { $0 != "-" && $0 != " " }
        guard digits.count == randomBytes * 2, digits.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        return digits
    }

    /// The Argon2id hash of a normalized code, computed off the concurrency pool.
    static func hash(_ normalized: String) async throws -> String {
        try await offload { () throws -> String in
            do {
                return try PasswordHash.hash(SecretBytes(copying: Array(normalized.utf8)), opsLimit: opsLimit, memLimit: memLimit)
            } catch {
                throw RelayError.internalError
            }
        }
    }

    /// Whether a normalized code matches a stored hash (constant time inside libsodium).
    static func verify(_ normalized: String, against stored: String) async -> Bool {
        (try? await offload { PasswordHash.verify(SecretBytes(copying: Array(normalized.utf8)), against: stored) }) ?? false
    }

    private static let queue = DispatchQueue(label: "parley.recovery-code", attributes: .concurrent)
    private static let slots = DispatchSemaphore(value: maxConcurrentHashes)

    /// Runs `body` on a dispatch thread (an Argon2id computation must not block the cooperative pool, which has
    /// one thread per core), at most `maxConcurrentHashes` at once.
    private static func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                slots.wait()
                defer { slots.signal() }
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
