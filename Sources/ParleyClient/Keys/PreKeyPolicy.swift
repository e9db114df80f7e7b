/// How many prekeys a device publishes and how long its signed prekeys live. Signal's clients
/// use the same orders of magnitude.
public struct PreKeyPolicy: Sendable, Equatable {
    /// One-time prekeys generated at registration and per refill (the relay accepts at most 100
    /// per request).
    public var batchSize: Int = 100
    /// One-time Kyber prekeys generated at registration and per refill (the relay accepts at most
    /// 100 per request). Fewer than EC ones: each costs a Kyber1024 key generation and 1.6 KB at
    /// the relay, and the last-resort Kyber prekey covers initiators when they run out (those
    /// sessions then lack the one-time key's forward secrecy for the KEM part only).
    public var kyberBatchSize: Int = 20
    /// The relay reports "refill needed" below this many (documented in Specs/relay-protocol.md).
    public var refillThreshold: Int = 10
    /// A new signed prekey (and a new last-resort Kyber prekey) is generated when the newest is
    /// older than this (seconds): 2 days.
    public var signedPreKeyRotation: UInt64 = 2 * 24 * 3600
    /// Replaced signed prekeys (and last-resort Kyber prekeys) are kept this long (seconds) for messages that were already on
    /// their way when the relay started handing out the new one: 30 days, the relay's queue
    /// retention.
    public var signedPreKeyGrace: UInt64 = 30 * 24 * 3600

    /// Prekey ids are 24-bit in libsignal's clients; Parley keeps to that range.
    public static let maxPreKeyId: UInt32 = 0xFF_FFFF

    public init() {}
}
