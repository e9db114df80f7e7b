import AsyncHTTPClient
import NIOCore

/// The HTTP client devices use by default: a relay that does not answer fails a request within
/// seconds (the outbox retries later), and up to 16 requests run at once per relay (sender-key
/// distribution to large groups). The connect timeout also bounds how long a request may wait for one of
/// those 16 connections, so it is not shorter than a busy moment of a large fan-out (3 s failed requests
/// queued behind 16 slow ones on a loaded 2-core machine).
///
/// A connection the relay refuses fails the request at once; the pool does not retry it. With retries, each
/// refusal during an outage lengthened the pool's own backoff (100 ms x 1.25^n, capped at 60 s), the slots
/// backing off stayed counted against the 16, and a request made after the relay came back could wait for one
/// of them until the connect timeout and fail with the outage's last refusal (`RelayComebackTests`). Retrying is
/// the caller's: the outbox, the connection loop's own backoff (`ParleyDevice.Backoff`), a command run again.
/// A relay that accepts connections slowly still gets the full connect timeout.
public enum ParleyHTTP {
    public static let shared: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
