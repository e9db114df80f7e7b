import Hummingbird
import ParleyWire

/// `/healthz` (unauthenticated) and WebSocket tickets on the public listener; `/metrics` (Prometheus text
/// format, unauthenticated) on the metrics listener only (loopback by default, see `RelayConfiguration.metrics`).
struct OpsRoutes {
    let core: RelayCore

    func register(on router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in
            // 503 while the database is unreachable (this node cannot store or read anything): a balancer's health
            // check then routes around a node that is cut off while the others are not.
            guard core.store.isAvailable else {
                var response = try HTTPSupport.json(
                    HealthResponse(status: HealthResponse.degraded, version: WireVersion.current), status: .serviceUnavailable)
                response.headers[.retryAfter] = "1"
                return response
            }
            return try HTTPSupport.json(HealthResponse(status: HealthResponse.ok, version: WireVersion.current))
        }
        router.post("/v1/ws/tickets") { request, _ in
            let (device, credentialHash) = try await Authenticator(store: core.store).authenticateWithCredential(request.headers)
            guard let ticket = core.tickets.issue(for: device, credentialHash: credentialHash) else {
                throw RelayError.rateLimited
            }
            return try HTTPSupport.json(WebSocketTicketResponse(ticket: ticket), status: .created)
        }
    }

    /// The metrics listener's one route.
    func registerMetrics(on router: Router<some RequestContext>) {
        router.get("/metrics") { _, _ in
            core.metrics.connections.set(Int64(await core.hub.count))
            core.metrics.databaseUp.set(Int64(core.store.isAvailable ? 1 : 0))
            core.store.reportMetrics(to: core.metrics)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: core.metrics.registry.emitToBuffer())))
        }
    }
}
