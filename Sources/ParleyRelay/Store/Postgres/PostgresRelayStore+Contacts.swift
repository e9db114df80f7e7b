import Foundation
import PostgresNIO

extension PostgresRelayStore {
    /// The condition "account `viewer` and the account in column `other` are contacts" (`RelayStore.areContacts`):
    /// the same account, a 1:1 message routed each way (`contact`), or a group they share.
    private static func contactCondition(viewer: String, other: String) -> String {
        """
        (\(other) = \(viewer)
            OR (EXISTS (SELECT 1 FROM contact c WHERE c.account_id = \(viewer) AND c.peer_id = \(other))
                AND EXISTS (SELECT 1 FROM contact c WHERE c.account_id = \(other) AND c.peer_id = \(viewer)))
            OR EXISTS (SELECT 1 FROM group_member mine JOIN group_member theirs ON theirs.group_id = mine.group_id
                WHERE mine.account_id = \(viewer) AND theirs.account_id = \(other)))
        """
    }

    func areContacts(_ a: Int64, _ b: String) async throws -> Bool {
        try await contacts(of: a, among: [b]).contains(b)
    }

    func contacts(of viewer: Int64, among names: [String]) async throws -> Set<String> {
        let unique = Array(Set(names))
        guard !unique.isEmpty else { return [] }
        return try await read { [self] connection in
            var result = Set<String>()
            for row in try await rows(
                connection,
                PostgresQuery(
                    unsafeSQL: """
                        SELECT a.name FROM account a WHERE a.name = ANY($1::text[])
                        AND \(Self.contactCondition(viewer: "$2::bigint", other: "a.id"))
                        """,
                    binds: try Self.bindings(unique, viewer)))
            {
                result.insert(try row.decode(String.self))
            }
            return result
        }
    }

    /// Records the contact pairs a commit routed 1:1 messages between (those not known to be stored already).
    func recordContacts(_ connection: PostgresConnection, _ pairs: Set<ContactPair>) async throws {
        let fresh = pairs.filter { !knownContacts.contains($0) }
        guard !fresh.isEmpty else { return }
        let list = Array(fresh)
        try await rows(
            connection,
            """
            INSERT INTO contact (account_id, peer_id) SELECT * FROM unnest(\(list.map(\.from)), \(list.map(\.to)))
            ON CONFLICT DO NOTHING
            """)
    }
}
