import Hummingbird
import ParleyWire

/// `/healthz` (unauthenticated) and WebSocket tickets on the public listener; `/metrics` (Prometheus text
/// format, unauthenticated) on the metrics listener only (loopback by default, see `RelayConfiguration.metrics`).
struct OpsRoutes {
    let core: RelayCore

    func register(on router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in
            try HTTPSupport.json(HealthResponse(status: "ok", version: WireVersion.current))
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
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: core.metrics.registry.emitToBuffer())))
        }
    }
}
