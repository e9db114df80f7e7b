/// Where an outgoing message stands for one recipient account.
///
/// Statuses only move forward (`pending` → `sent` → `delivered` → `read`): a delivery receipt
/// arriving after a read receipt changes nothing. `failed` may replace `pending` or `sent`, and
/// anything may replace `failed` (a retry).
public enum DeliveryStatus: String, Sendable, CaseIterable {
    case pending
    case sent
    case delivered
    case read
    case failed

    /// Whether a recipient now at `self` may move to `next`.
    package func mayChange(to next: DeliveryStatus) -> Bool {
        switch (self, next) {
        case (.failed, _): return true
        case (_, .failed): return self == .pending || self == .sent
        default: return next.rank > rank
        }
    }

    private var rank: Int {
        switch self {
        case .pending: return 0
        case .sent: return 1
        case .delivered: return 2
        case .read: return 3
        case .failed: return -1
        }
    }
}
