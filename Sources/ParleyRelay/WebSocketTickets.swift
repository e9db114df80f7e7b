import Foundation

/// One-time WebSocket tickets for clients that cannot set an `Authorization` header on the upgrade
/// request (browsers): `POST /v1/ws/tickets` returns a ticket valid once, for 60 seconds, used as
/// `GET /v1/ws?ticket=...`. Kept in memory only (a restart invalidates them).
actor WebSocketTickets {
    static let lifetime: Duration = .seconds(60)
    static let maxOutstanding = 100_000

    private var tickets: [String: (device: AuthenticatedDevice, expires: ContinuousClock.Instant)] = [:]

    func issue(for device: AuthenticatedDevice) -> String {
        let now = ContinuousClock.now
        if tickets.count >= Self.maxOutstanding {
            tickets = tickets.filter { $0.value.expires > now }
        }
        let ticket = Credentials.randomBase64URL(byteCount: 32)
        tickets[ticket] = (device, now + Self.lifetime)
        return ticket
    }

    /// Whether a ticket is currently valid (without spending it).
    func isValid(_ ticket: String) -> Bool {
        guard let entry = tickets[ticket] else { return false }
        return entry.expires > .now
    }

    /// Redeems a ticket (at most once).
    func redeem(_ ticket: String) -> AuthenticatedDevice? {
        guard let entry = tickets.removeValue(forKey: ticket), entry.expires > .now else { return nil }
        return entry.device
    }
}
