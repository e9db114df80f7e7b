import NIOCore

/// The key of a peer in per-address limits. An IPv4 address is its own key. An IPv6 address is keyed by its
/// /64 prefix: one subscriber's network (the usual assignment to a home or a host is a /64 or larger), inside
/// which an attacker picks source addresses at will, so that per-address limits would otherwise not bind.
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack socket) is keyed as the IPv4 address.
enum PeerAddressKey {
    static func key(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        switch address {
        case .v4:
            return address.ipAddress ?? "unknown"
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            return key(ipv6: bytes)
        case .unixDomainSocket:
            return "unix"
        }
    }

    /// The key of the 16 bytes of an IPv6 address.
    static func key(ipv6 bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "unknown" }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}
