import Hummingbird

/// Request context of the relay's HTTP routes: the basic context plus the peer's IP address,
/// used by the per-address flood limits.
struct RelayRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// IP address of the TCP peer (a reverse proxy's address when behind one), or "unknown".
    let peerAddress: String

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
