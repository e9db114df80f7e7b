import Hummingbird

/// Request context of the relay's HTTP routes: the basic context plus the peer's IP address,
/// used by the per-address flood limits.
struct RelayRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// IP address of the TCP peer (a reverse proxy's address when behind one), or "unknown".
    let peerAddress: String
    /// What per-address limits key on: the IPv4 address, or the /64 of an IPv6 address (`PeerAddressKey`).
    let peerKey: String

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        self.peerKey = PeerAddressKey.key(source.channel.remoteAddress)
    }
}
