import AsyncHTTPClient
import NIOCore

/// The HTTP client devices use by default: a relay that does not answer fails a request within
/// seconds (the outbox retries later), and up to 16 requests run at once per relay (sender-key
/// distribution to large groups).
public enum ParleyHTTP {
    public static let shared: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(30))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
