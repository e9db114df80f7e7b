import Foundation
import GRDB
import NIOConcurrencyHelpers

/// Contact pairs known to be stored (the send path skips their insert). Pairs are never deleted while the
/// relay runs (accounts are not deleted), so a remembered pair stays true; the set starts over when full.
final class KnownContacts: Sendable {
    /// Pairs remembered before the set starts over (16 bytes each plus hashing overhead: a few MB).
    static let maxPairs = 100_000

    private let pairs = NIOLockedValueBox(Set<ContactPair>())

    func contains(_ pair: ContactPair) -> Bool {
        pairs.withLockedValue { $0.contains(pair) }
    }

    func insert(_ new: Set<ContactPair>) {
        guard !new.isEmpty else { return }
        pairs.withLockedValue { pairs in
            if pairs.count + new.count > Self.maxPairs { pairs.removeAll(keepingCapacity: true) }
            pairs.formUnion(new)
        }
    }
}

extension SQLiteRelayStore {
    /// Whether `a` and `b` are contacts (`RelayStore.areContacts`).
    static func areContacts(_ db: Database, _ a: Int64, _ b: Int64) throws -> Bool {
        if a == b { return true }
        let routed = try db.cachedStatement(sql: "SELECT 1 FROM contact WHERE account_id = ? AND peer_id = ?")
        if try Bool.fetchOne(routed, arguments: [a, b]) == true, try Bool.fetchOne(routed, arguments: [b, a]) == true {
            return true
        }
        let shared = try db.cachedStatement(
            sql: """
                SELECT 1 FROM group_member mine JOIN group_member theirs ON theirs.group_id = mine.group_id
                WHERE mine.account_id = ? AND theirs.account_id = ? LIMIT 1
                """)
        return try Bool.fetchOne(shared, arguments: [a, b]) == true
    }

    func areContacts(_ a: Int64, _ b: String) async throws -> Bool {
        try await pool.read { db in
            guard let other = try Self.accountId(db, name: b) else { return false }
            return try Self.areContacts(db, a, other)
        }
    }

    func contacts(of viewer: Int64, among names: [String]) async throws -> Set<String> {
        try await pool.read { db in
            var result = Set<String>()
            for name in Set(names) {
                guard let other = try Self.accountId(db, name: name) else { continue }
                if try Self.areContacts(db, viewer, other) { result.insert(name) }
            }
            return result
        }
    }
}
