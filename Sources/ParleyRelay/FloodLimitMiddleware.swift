import Hummingbird

/// Per peer address limits: every request, and more strictly the unauthenticated account and
/// device creation endpoints. Refuses with `429 rateLimited`.
struct FloodLimitMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext

    let requests: RateLimiter
    let creations: RateLimiter

    init(limits: RelayLimits) {
        requests = RateLimiter(capacity: limits.requestBurstPerAddress, ratePerSecond: limits.requestsPerSecondPerAddress)
        creations = RateLimiter(
            capacity: limits.creationBurstPerAddress, ratePerSecond: limits.creationsPerSecondPerAddress)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard await requests.allow(context.peerAddress) else { throw RelayError.rateLimited }
        if request.method == .post,
            request.uri.path == "/v1/accounts" || request.uri.path == "/v1/devices/links/claim"
        {
            guard await creations.allow(context.peerAddress) else { throw RelayError.rateLimited }
        }
        return try await next(request, context)
    }
}
