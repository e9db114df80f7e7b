import Foundation
import NIOConcurrencyHelpers

/// One-time WebSocket tickets for clients that cannot set an `Authorization` header on the upgrade request
/// (browsers): `POST /v1/ws/tickets` returns a ticket valid once, for `lifetime`, used as
/// `GET /v1/ws?ticket=...`. Kept in memory only (a restart invalidates them; on several relay nodes a ticket
/// works on the node that issued it).
///
/// A ticket records the device and the credential hash it was issued under; the upgrade checks both against
/// the store again (`RelayServer`), so that a ticket of a device removed meanwhile does not open a session.
///
/// Bounded: at most `maxPerDevice` per device (issuing another drops the device's oldest) and `maxOutstanding`
/// in all (beyond it issuing fails). Every ticket lives exactly `lifetime`, so issue order is expiry order:
/// expired tickets are pruned from the front of a queue as tickets are issued and redeemed, with no scan of
/// the map.
final class WebSocketTicketMap: Sendable {
    static let lifetime: Duration = .seconds(60)
    /// Outstanding tickets over all devices (~250 bytes each with their bookkeeping: ~25 MB at most).
    static let maxOutstanding = 100_000
    /// Outstanding tickets per device: a device needs one per connection attempt; a few cover retries.
    static let maxPerDevice = 4

    /// What a ticket stands for.
    struct Ticket: Sendable {
        let device: AuthenticatedDevice
        /// SHA-256 of the device credential that authenticated the ticket's issue.
        let credentialHash: Data
    }

    private struct Entry {
        let ticket: Ticket
        let expires: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Tickets in issue order (= expiry order) from `head` on; some may be spent or dropped already.
        var order: [(ticket: String, expires: ContinuousClock.Instant)] = []
        var head = 0
        /// Each device's outstanding tickets, oldest first.
        var byDevice: [DeviceAddress: [String]] = [:]

        mutating func remove(_ ticket: String) -> Entry? {
            guard let entry = entries.removeValue(forKey: ticket) else { return nil }
            let address = entry.ticket.device.address
            if var tickets = byDevice[address] {
                tickets.removeAll { $0 == ticket }
                byDevice[address] = tickets.isEmpty ? nil : tickets
            }
            return entry
        }

        mutating func prune(_ now: ContinuousClock.Instant) {
            while head < order.count, order[head].expires <= now {
                _ = remove(order[head].ticket)
                head += 1
            }
            let queued = order.count - head
            if head >= 1_024, head >= queued {
                order.removeFirst(head)
                head = 0
            } else if queued > 2 * WebSocketTicketMap.maxOutstanding {
                // Mostly spent tickets that have not expired yet (a burst of issues and redemptions).
                order = order[head...].filter { entries[$0.ticket] != nil }
                head = 0
            }
        }
    }

    private let state = NIOLockedValueBox(State())

    /// A new ticket for `device`, or nil when `maxOutstanding` tickets are outstanding.
    func issue(for device: AuthenticatedDevice, credentialHash: Data, now: ContinuousClock.Instant = .now) -> String? {
        let ticket = Credentials.randomBase64URL(byteCount: 32)
        return state.withLockedValue { state in
            state.prune(now)
            if let tickets = state.byDevice[device.address], tickets.count >= Self.maxPerDevice, let oldest = tickets.first {
                _ = state.remove(oldest)
            }
            guard state.entries.count < Self.maxOutstanding else { return nil }
            let expires = now + Self.lifetime
            state.entries[ticket] = Entry(ticket: Ticket(device: device, credentialHash: credentialHash), expires: expires)
            state.order.append((ticket, expires))
            state.byDevice[device.address, default: []].append(ticket)
            return ticket
        }
    }

    /// Spends a ticket (at most once): what it stands for, or nil if it is unknown, spent or expired.
    func redeem(_ ticket: String, now: ContinuousClock.Instant = .now) -> Ticket? {
        state.withLockedValue { state in
            state.prune(now)
            return state.remove(ticket)?.ticket
        }
    }

    /// Drops every ticket of a device (it was removed).
    func revoke(_ address: DeviceAddress) {
        state.withLockedValue { state in
            for ticket in state.byDevice[address] ?? [] { _ = state.remove(ticket) }
        }
    }

    /// Tickets issued and neither spent nor known to be expired.
    var outstanding: Int { state.withLockedValue { $0.entries.count } }
}
