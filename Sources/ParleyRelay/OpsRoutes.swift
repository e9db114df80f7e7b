import Hummingbird
import ParleyWire

/// `/healthz`, `/metrics` (Prometheus text format; both unauthenticated) and WebSocket tickets.
struct OpsRoutes {
    let core: RelayCore

    func register(on router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in
            try HTTPSupport.json(HealthResponse(status: "ok", version: WireVersion.current))
        }
        router.post("/v1/ws/tickets") { request, _ in
            let device = try await Authenticator(store: core.store).authenticate(request.headers)
            return try HTTPSupport.json(WebSocketTicketResponse(ticket: await core.tickets.issue(for: device)), status: .created)
        }
        router.get("/metrics") { _, _ in
            core.metrics.connections.set(Int64(await core.hub.count))
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: core.metrics.registry.emitToBuffer())))
        }
    }
}
