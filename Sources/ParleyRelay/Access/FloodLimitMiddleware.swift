import Hummingbird

/// Per peer address limits: every request, and more strictly the unauthenticated account and
/// device creation endpoints. Refuses with `429 rateLimited`.
///
/// Router middlewares run after the router matched the request, so the creation limit keys on the matched
/// route (`context.endpointPath`), not on the raw path: `/v1/accounts/`, `//v1/accounts` and
/// `/v1//accounts` reach the same handler and take the same tokens. Addresses are keyed per
/// `PeerAddressKey` (IPv6 by /64).
struct FloodLimitMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext

    /// The routes (as the router spells their patterns) that create accounts or devices.
    static let creationRoutes: Set<String> = [RouterPath("/v1/accounts").description, RouterPath("/v1/devices/links/claim").description]
    /// Account recovery (which also creates a device): `RelayLimits.recoveryAttemptsPerSource` per window, far
    /// stricter than the creation limit.
    static let recoveryRoute = RouterPath("/v1/accounts/recover").description

    let requests: RateLimiter
    let creations: RateLimiter
    let recoveries: RateLimiter

    init(limits: RelayLimits) {
        requests = RateLimiter(capacity: limits.requestBurstPerAddress, ratePerSecond: limits.requestsPerSecondPerAddress)
        creations = RateLimiter(
            capacity: limits.creationBurstPerAddress, ratePerSecond: limits.creationsPerSecondPerAddress)
        recoveries = RateLimiter(
            capacity: RelayLimits.recoveryAttemptsPerSource,
            ratePerSecond: Double(RelayLimits.recoveryAttemptsPerSource) / Double(RelayLimits.recoveryWindowSeconds))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard requests.allow(context.peerKey) else { throw RelayError.rateLimited }
        if request.method == .post, let route = context.endpointPath, Self.creationRoutes.contains(route) {
            guard creations.allow(context.peerKey) else { throw RelayError.rateLimited }
        }
        if request.method == .post, context.endpointPath == Self.recoveryRoute, let wait = recoveries.take(context.peerKey, count: 1) {
            throw RelayError.rateLimitedFor(seconds: Int(wait.components.seconds) + 1)
        }
        return try await next(request, context)
    }
}
