import AsyncHTTPClient
import NIOCore

/// The HTTP client devices use by default: a relay that does not answer fails a request within
/// seconds (the outbox retries later), and up to 16 requests run at once per relay (sender-key
/// distribution to large groups). The connect timeout also bounds how long a request may wait for one of
/// those 16 connections, so it is not shorter than a busy moment of a large fan-out (3 s failed requests
/// queued behind 16 slow ones on a loaded 2-core machine).
public enum ParleyHTTP {
    public static let shared = makeClient(retryRefusedConnections: true)

    /// For one-shot commands (the CLI): the same, except that a connection the relay refuses fails the request at
    /// once instead of being tried again with backoff until the connect timeout (which made every command wait
    /// 10 s before saying "cannot reach the relay" when the relay was down). What could not be sent stays in the
    /// outbox either way; a relay that accepts connections slowly still has the full connect timeout.
    public static let interactive = makeClient(retryRefusedConnections: false)

    private static func makeClient(retryRefusedConnections: Bool) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        configuration.connectionPool.retryConnectionEstablishment = retryRefusedConnections
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
