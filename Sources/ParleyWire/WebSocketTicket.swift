/// Answer of `POST /v1/ws/tickets`: a one-time WebSocket ticket (for clients that cannot send headers on the upgrade).
public struct WebSocketTicketResponse: Codable, Sendable, Equatable {
    /// Base64url, 43 characters; use as `GET /v1/ws?ticket=<ticket>` within 60 seconds, once.
    public var ticket: String

    public init(ticket: String) {
        self.ticket = ticket
    }
}
