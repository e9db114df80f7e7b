import ParleyWire

/// Every limit the relay enforces, in one place. Defaults are documented in Specs/relay-protocol.md;
/// the executable exposes the operational ones as flags.
public struct RelayLimits: Sendable {
    /// Max size of one ciphertext (`content`), bytes after base64 decoding.
    public static let maxCiphertextBytes = 256 * 1024
    /// Max one-time prekeys in one upload (registration, link claim or `PUT /v1/keys`).
    public static let maxOneTimePreKeysPerUpload = 100
    /// Max one-time Kyber prekeys in one upload: as for EC prekeys, and as Signal's clients upload them (each is
    /// 1569 bytes, ~2.2 KB of JSON; `keyUploadBody` makes room for them).
    public static let maxKyberOneTimePreKeysPerUpload = 100
    /// A device whose remaining one-time prekeys (EC or Kyber) are under this is told to refill.
    public static let preKeyRefillThreshold = 10
    /// Max bytes of an HTTP request body.
    public static let maxRequestBodyBytes = 8 * 1024 * 1024
    /// Max bytes of one WebSocket message sent by a device (ParleyWire's frame decoder enforces it).
    public static let maxClientFrameBytes = ClientFrameDecoding.maxFrameBytes
    /// Max bytes of one WebSocket frame the relay sends (an envelope with a 256 KiB ciphertext, base64).
    public static let maxServerFrameBytes = 1024 * 1024
    /// Account name: 3...32 characters of `a-z`, `0-9`, `_`, `-` (the shared `AccountNameRule`).
    public static let accountNameLength = AccountNameRule.length
    /// Max UTF-8 bytes of a device name.
    public static let maxDeviceNameBytes = 64
    /// Max public key / signature size accepted in (EC) prekey material. Kyber prekeys are checked
    /// exactly instead: a 1569-byte Kyber1024 public key and a 64-byte signature.
    public static let maxKeyBytes = 256
    /// Max envelopes read from the database per delivery page.
    public static let deliveryPageSize = 200
    /// Max ciphertext bytes of one delivery page (at least one envelope): a page is held in memory, and handed
    /// to the socket, at once. 512 KiB is two maximum-size envelopes, or all 200 small ones.
    public static let deliveryPageBytes = 512 * 1024
    /// Max submissions committed in one write transaction.
    public static let maxSubmissionsPerTransaction = 2_000
    /// Max accounts in one presence subscription.
    public static let maxPresenceSubscriptions = 500
    /// Max ids in one ack frame.
    public static let maxAckIds = ClientFrameDecoding.maxAckIds
    /// Max queue entries deleted per expiry transaction (a sweep repeats until done).
    public static let expiryBatchSize = 10_000
    /// Max bytes of a Web Push endpoint URL.
    public static let maxPushEndpointBytes = 2_048
    /// Lifetime of a VAPID JWT (RFC 8292 allows at most 24 h).
    public static let vapidTokenLifetimeSeconds: Int64 = 12 * 3600
    /// Timeout of one push request.
    public static let pushRequestTimeoutSeconds: Int64 = 10
    /// Account recovery attempts per account within `recoveryWindowSeconds` (counted before the code is checked,
    /// right or wrong, on every node: the count is in the database). With 128-bit codes guessing is hopeless
    /// anyway (5 a day-and-a-bit per account); the bound keeps a name's owner from being locked out for long.
    public static let recoveryAttemptsPerAccount = 5
    /// The window of `recoveryAttemptsPerAccount`: fixed, from the first attempt after the last window ended.
    public static let recoveryWindowSeconds: Int64 = 3600
    /// Account recovery attempts per peer address (IPv4 address or IPv6 /64), on each node: a burst of this
    /// many, then this many per `recoveryWindowSeconds`. Bounds what one source can try across many accounts.
    public static let recoveryAttemptsPerSource = 20

    /// Bytes of one stored piece of a link history archive (a row of `link_history_piece`): the relay holds at
    /// most one piece per upload or download in memory, and a piece is one database round trip.
    public static let linkHistoryPieceBytes = 1024 * 1024
    /// An approved link's history archive is kept this long past the link code's expiry (the new device
    /// downloads right after the approval; a large archive on a slow line needs a while), then swept.
    public static let linkHistoryKeepSeconds: Int64 = 3600

    /// Devices per account (active + pending link).
    public var maxDevicesPerAccount: Int = 6
    /// Queued messages per device before senders get `queueFull`.
    public var maxQueuedMessagesPerDevice: Int = 10_000
    /// Queued ciphertext bytes per device before senders get `queueFull`.
    public var maxQueuedBytesPerDevice: Int = 256 * 1024 * 1024
    /// Messages older than this are deleted undelivered.
    public var retentionSeconds: Int64 = 30 * 24 * 3600
    /// How often the expiry sweep runs.
    public var expirySweepSeconds: Int64 = 60
    /// Members per group (including the creator).
    public var maxGroupMembers: Int = 500
    /// Lifetime of a device link code.
    public var linkCodeTTLSeconds: Int64 = 600
    /// Bytes of one link's history archive (`PUT /v1/devices/links/{code}/history`): 128 MiB holds years of text
    /// messages (some 400,000 at ~300 bytes each); a larger `Content-Length` is refused before the body is read, a
    /// chunked body is cut off as it passes it.
    public var maxLinkHistoryBytes: Int = RelayLimits.defaultMaxLinkHistoryBytes
    public static let defaultMaxLinkHistoryBytes = 128 * 1024 * 1024
    /// Bytes of all history archives of one account at once (several links in flight): twice one archive.
    public var maxLinkHistoryBytesPerAccount: Int = 2 * RelayLimits.defaultMaxLinkHistoryBytes
    /// Prekey bundles per requesting device: bucket size, in device bundles (a `*` or batched fetch takes one token
    /// per device it returns). 3,000 = a 500-member group of 6-device accounts, fetched at once when it is set up.
    public var bundleFetchBurst: Int = 3_000
    /// Prekey bundles per requesting device: tokens refilled per second (3,600 an hour).
    public var bundleFetchPerSecond: Double = 1
    /// WebSocket protocol-level ping interval; a connection that misses a pong is closed.
    public var pingIntervalSeconds: Int64 = 30
    /// A connection that sends no request within this time is closed (it would otherwise hold a file
    /// descriptor, and a graceful shutdown, for as long as the peer likes).
    public var firstRequestTimeoutSeconds: Int64 = 10
    /// An HTTP keep-alive connection idle this long is closed (WebSockets have pings instead).
    public var httpIdleTimeoutSeconds: Int64 = 90
    /// Malformed or rejected frames tolerated on one WebSocket before the relay closes it.
    public var maxBadFramesPerConnection: Int = 10
    /// Bytes (as encoded frames) a WebSocket connection's outbox holds while its socket is not writable. Beyond
    /// it, live envelopes stay in the store only (read again once the device reads) and ephemeral frames
    /// (presence, typing, pong) are dropped: a device that does not read costs this much, not its queue.
    public var maxOutboxBytesPerConnection: Int = 512 * 1024
    /// Client frames per second per connection (token bucket, burst = 5 x rate) before frames are refused.
    public var clientFramesPerSecond: Double = 50
    /// Presence changes of one account are coalesced over this window.
    public var presenceCoalesceMilliseconds: Int64 = 250

    /// Pushes for one offline device are coalesced over this window (one push per burst).
    public var pushCoalesceMilliseconds: Int64 = 1_000
    /// Attempts per push (first try + retries) on 429, 5xx or network errors.
    public var pushMaxAttempts: Int = 4
    /// Backoff before retry n is base x 2^(n-1).
    public var pushBackoffBaseMilliseconds: Int64 = 1_000
    /// `TTL` header of pushes, seconds.
    public var pushTTLSeconds: Int = 86_400
    /// Accept `http://` push endpoints and endpoints on non-public addresses (loopback, private...): tests and local
    /// development only. Off: https to public addresses only (`PushEndpointPolicy`).
    public var allowInsecurePushEndpoints: Bool = false

    /// HTTP requests per peer address: bucket size (behind a reverse proxy all clients share one address).
    public var requestBurstPerAddress: Int = 1_000
    /// HTTP requests per peer address: tokens per second.
    public var requestsPerSecondPerAddress: Double = 500
    /// Account registrations + link claims per peer address: bucket size.
    public var creationBurstPerAddress: Int = 20
    /// Account registrations + link claims per peer address: tokens per second.
    public var creationsPerSecondPerAddress: Double = 0.5

    // MARK: connections (slow and greedy clients)

    /// TCP connections one peer holds at once: an IPv4 address, or an IPv6 /64 (one subscriber's prefix). Sized
    /// for carrier-grade NAT, where hundreds of subscribers can share one public IPv4 address and each device
    /// holds a WebSocket plus an HTTP connection or two: 1,000 serves several hundred devices behind one
    /// address while one address takes at most ~5 % of a relay with 20,000 file descriptors. Beyond it a new
    /// connection is closed at once (`parley_relay_connections_refused_total{reason="address"}`). Behind a
    /// reverse proxy every client has the proxy's address: raise it there.
    public var maxConnectionsPerAddress: Int = 1_000
    /// TCP connections the relay holds at once; nil: the process's open-file limit minus a reserve for the
    /// database, logs and push requests (`connectionCapacity(openFileLimit:)`). At the cap, a new connection
    /// closes the oldest connection that is not a device session (a slowloris connection, an idle keep-alive
    /// one); if every connection is a session, the new one is closed.
    public var maxConnections: Int? = nil
    /// A request body must arrive at this average rate (after `requestBodyGraceSeconds`), else the connection
    /// is closed: 8 KiB/s is a poor mobile uplink; a body trickling slower only holds a connection.
    public var minRequestBodyBytesPerSecond: Int = 8 * 1024
    /// Time a request body may take before `minRequestBodyBytesPerSecond` applies.
    public var requestBodyGraceSeconds: Int64 = 10
    /// A connection whose socket stays unwritable this long (its peer does not read what the relay sends) is
    /// closed: HTTP responses and WebSocket frames alike.
    public var unwritableTimeoutSeconds: Int64 = 30

    /// The connection cap derived from an open-file limit: a quarter of it, at most 512 descriptors, stays
    /// free for the database (a few files per SQLite connection), logs and outgoing push requests.
    public static func connectionCapacity(openFileLimit: Int) -> Int {
        max(1, openFileLimit - min(512, openFileLimit / 4))
    }

    // MARK: queue shares, prekey hand-outs, pushes

    /// One sender account's share of one device queue, messages: a quarter of the device cap, so that four
    /// senders (not one) are needed to make a device unreachable for everyone else.
    public var maxQueuedMessagesPerSender: Int = 2_500
    /// One sender account's share of one device queue, ciphertext bytes (a quarter of the device cap).
    public var maxQueuedBytesPerSender: Int = 64 * 1024 * 1024
    /// One-time prekeys one device hands out: bucket size. Beyond it, bundles of the device come without a
    /// one-time prekey (X3DH without it still works) until the bucket refills: however many requesters ask,
    /// the device is not drained (and made to refill) faster than this.
    public var oneTimePreKeyHandoutBurst: Int = 100
    /// One-time prekeys one device hands out: tokens refilled per hour.
    public var oneTimePreKeyHandoutsPerHour: Double = 100
    /// Pushes per push-service origin (scheme, host, port): tokens per second. Beyond, pushes are dropped (the
    /// device still finds its messages when it connects): one origin is not flooded through the relay.
    public var pushesPerSecondPerOrigin: Double = 100
    /// Pushes per push-service origin: bucket size.
    public var pushBurstPerOrigin: Int = 1_000

    /// Graceful shutdown (SIGTERM/SIGINT) gets this long before the relay cancels what is left.
    public var gracefulShutdownSeconds: Int64 = 10

    public init() {}
}
