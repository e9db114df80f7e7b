import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Where the relay sends Web Pushes. A device registers a URL and the relay POSTs to it: without a policy that
/// is a server-side request forgery (the relay's network position, e.g. `169.254.169.254` or an internal
/// service). The policy (Specs/relay-protocol.md §9):
///
/// * `https` only, no user info, a host, at most 2,048 bytes;
/// * the host's addresses (an IP literal as is, a name through DNS) must all be **public** (`PushAddress`):
///   loopback, private, link-local, CGNAT, unique-local, multicast, unspecified, documentation and reserved
///   ranges, and the IPv4-mapped / NAT64 / 6to4 forms of those, are refused;
/// * checked when the endpoint is registered and again at every push attempt, which connects to the address
///   it checked (the HTTP client does not resolve the name again; TLS SNI and `Host` keep the name), so a name
///   that later resolves elsewhere (DNS rebinding) reaches nothing;
/// * no redirects are followed.
///
/// `allowInsecure` (`--allow-insecure-push`, tests and local development) also accepts `http` and non-public
/// addresses; endpoints are still resolved once per attempt and the connection pinned.
struct PushEndpointPolicy: Sendable {
    let allowInsecure: Bool
    let resolver: any PushAddressResolver

    /// A syntactically acceptable endpoint.
    struct Endpoint: Sendable {
        let url: String
        let scheme: String
        /// As the HTTP client sees it (the key of its DNS override); IPv6 literals without brackets.
        let host: String
        let port: Int
        /// `scheme://host:port`, lowercase: the unit of the per-origin push limit.
        var origin: String { "\(scheme)://\(host.lowercased()):\(port)" }
    }

    /// Checks the URL's form (not its addresses).
    func parse(_ endpoint: String) throws(RelayError) -> Endpoint {
        guard endpoint.utf8.count <= RelayLimits.maxPushEndpointBytes, let url = URL(string: endpoint),
            let scheme = url.scheme?.lowercased(), var host = url.host, !host.isEmpty
        else { throw .invalidField("endpoint must be an absolute URL of at most \(RelayLimits.maxPushEndpointBytes) bytes") }
        guard scheme == "https" || (scheme == "http" && allowInsecure) else {
            throw .invalidField("endpoint must use https")
        }
        guard url.user == nil, url.password == nil else { throw .invalidField("endpoint must not carry user info") }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // Zone ids (`fe80::1%eth0`) and percent-encoded hosts name nothing a push service uses.
        guard !host.contains("%") else { throw .invalidField("endpoint host is not acceptable") }
        return Endpoint(url: endpoint, scheme: scheme, host: host, port: url.port ?? (scheme == "https" ? 443 : 80))
    }

    /// Resolves the endpoint's host and checks every address; returns the one to connect to.
    func address(of endpoint: Endpoint) async throws(PushEndpointError) -> SocketAddress {
        let addresses: [SocketAddress]
        if let literal = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) {
            addresses = [literal]
        } else {
            do {
                addresses = try await resolver.resolve(host: endpoint.host, port: endpoint.port)
            } catch {
                throw .doesNotResolve
            }
        }
        guard let first = addresses.first else { throw .doesNotResolve }
        if !allowInsecure {
            for address in addresses where !PushAddress.isPublic(address) {
                throw .notPublic(address.ipAddress ?? "?")
            }
        }
        return first
    }

    /// Registration: the form and the addresses, as `invalidField` errors.
    func check(_ endpoint: String) async throws(RelayError) -> Endpoint {
        let parsed = try parse(endpoint)
        do {
            _ = try await address(of: parsed)
        } catch {
            switch error {
            case .doesNotResolve: throw .invalidField("endpoint host does not resolve")
            case .notPublic: throw .invalidField("endpoint host is not a public address")
            }
        }
        return parsed
    }
}

/// Why an endpoint's host is not used.
enum PushEndpointError: Error, Equatable {
    case doesNotResolve
    /// The host has an address outside the public unicast ranges (the address, as text).
    case notPublic(String)
}

/// Resolves a push endpoint's host to all of its addresses.
protocol PushAddressResolver: Sendable {
    func resolve(host: String, port: Int) async throws -> [SocketAddress]
}

/// The system resolver (`getaddrinfo`, every address, both families), run on a small thread pool of its own so
/// that slow lookups never hold the event loops or the shared pool.
final class SystemPushAddressResolver: PushAddressResolver {
    static let shared = SystemPushAddressResolver()

    /// Lookups that may block at once; more wait for a thread.
    static let threads = 4

    private let pool: NIOThreadPool

    private init() {
        pool = NIOThreadPool(numberOfThreads: Self.threads)
        pool.start()
    }

    func resolve(host: String, port: Int) async throws -> [SocketAddress] {
        try await pool.runIfActive { try Self.getaddrinfoAll(host: host, port: port) }
    }

    struct LookupFailed: Error {}

    static func getaddrinfoAll(host: String, port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { throw LookupFailed() }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let raw = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET:
                    let v4 = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                    addresses.append(SocketAddress(v4, host: host))
                case AF_INET6:
                    let v6 = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                    addresses.append(SocketAddress(v6, host: host))
                default:
                    break
                }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}

/// Which addresses are public unicast (IANA special-purpose registries, RFC 6890 and successors).
enum PushAddress {
    static func isPublic(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4):
            return isPublic(ipv4: withUnsafeBytes(of: v4.address.sin_addr) { Array($0) })
        case .v6(let v6):
            return isPublic(ipv6: withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) })
        case .unixDomainSocket:
            return false
        }
    }

    /// IPv4 (4 bytes, network order).
    static func isPublic(ipv4 b: [UInt8]) -> Bool {
        guard b.count == 4 else { return false }
        switch (b[0], b[1], b[2]) {
        case (0, _, _): return false  // "this network", 0.0.0.0
        case (10, _, _): return false  // private
        case (100, 64...127, _): return false  // CGNAT (shared address space)
        case (127, _, _): return false  // loopback
        case (169, 254, _): return false  // link-local (cloud metadata: 169.254.169.254)
        case (172, 16...31, _): return false  // private
        case (192, 0, 0): return false  // IETF protocol assignments
        case (192, 0, 2): return false  // documentation (TEST-NET-1)
        case (192, 88, 99): return false  // 6to4 relay anycast
        case (192, 168, _): return false  // private
        case (198, 18...19, _): return false  // benchmarking
        case (198, 51, 100): return false  // documentation (TEST-NET-2)
        case (203, 0, 113): return false  // documentation (TEST-NET-3)
        case (224...255, _, _): return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    /// IPv6 (16 bytes): global unicast (2000::/3) minus its special ranges; IPv4-mapped and NAT64 forms are
    /// judged by the IPv4 address they carry.
    static func isPublic(ipv6 b: [UInt8]) -> Bool {
        guard b.count == 16 else { return false }
        let first10Zero = b[0..<10].allSatisfy { $0 == 0 }
        if first10Zero, b[10] == 0xFF, b[11] == 0xFF {  // ::ffff:a.b.c.d
            return isPublic(ipv4: Array(b[12..<16]))
        }
        if b[0] == 0x00, b[1] == 0x64, b[2] == 0xFF, b[3] == 0x9B, b[4..<12].allSatisfy({ $0 == 0 }) {  // 64:ff9b::/96
            return isPublic(ipv4: Array(b[12..<16]))
        }
        guard b[0] & 0xE0 == 0x20 else { return false }  // not 2000::/3: ::, ::1, fc00::/7, fe80::/10, ff00::/8...
        if b[0] == 0x20, b[1] == 0x01, b[2] < 0x02 { return false }  // 2001::/23 IETF protocol assignments (Teredo...)
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0D, b[3] == 0xB8 { return false }  // 2001:db8::/32 documentation
        if b[0] == 0x20, b[1] == 0x02 { return false }  // 2002::/16 6to4 (carries any IPv4 address)
        if b[0] == 0x3F, b[1] == 0xFF, b[2] & 0xF0 == 0x00 { return false }  // 3fff::/20 documentation
        return true
    }
}
