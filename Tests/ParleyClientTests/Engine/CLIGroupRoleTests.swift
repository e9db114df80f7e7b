import Foundation
@testable import ParleyClient
import ParleyRelay
import ParleyTestSupport
import Testing

/// Group roles through the real `parley` binary: the creator is an admin, a member who is not one
/// is refused with one clear line, `parley group admin` makes one, and every change reads as one
/// sentence in `parley sync` and `parley history`.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CLIGroupRoleTests {
    @Test func adminsChangeMembersAndChangesReadAsSentencesOnce() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let (alice, bob, carol) = ("alice\(suffix)", "bob\(suffix)", "carol\(suffix)")
        var homes: [String: String] = [:]
        for name in [alice, bob, carol] {
            homes[name] = harness.dir.appendingPathComponent("home-\(name)").path
            #expect(try await CLI.run(CLI.binary, home: homes[name]!, ["register", name, "--server", harness.baseURL]).0 == 0)
        }
        func run(_ who: String, _ arguments: [String]) async throws -> (Int32, String) {
            try await CLI.run(CLI.binary, home: homes[who]!, arguments)
        }

        let (created, createdOutput) = try await run(alice, ["group", "create", "trip", bob, carol])
        #expect(created == 0, "\(createdOutput)")
        #expect(try await run(bob, ["sync"]).0 == 0)

        // Bob is a member, not an admin: refused, one line, non-zero exit, nothing changes.
        let (refused, refusal) = try await run(bob, ["group", "remove", "trip", carol])
        #expect(refused != 0)
        #expect(refusal.contains("only a group admin may remove other members"), "\(refusal)")

        // Alice makes bob an admin; now bob may remove carol.
        let (promoted, promotion) = try await run(alice, ["group", "admin", "trip", bob])
        #expect(promoted == 0, "\(promotion)")
        #expect(promotion.contains("\(bob) is now an admin"))
        let (removed, removal) = try await run(bob, ["group", "remove", "trip", carol])
        #expect(removed == 0, "\(removal)")
        let (_, list) = try await run(bob, ["group", "list"])
        #expect(list.contains("\(alice) (admin)") && list.contains("\(bob) (admin)") && !list.contains(carol), "\(list)")

        // Carol's sync shows each change once, as a sentence.
        let (synced, carolSync) = try await run(carol, ["sync"])
        #expect(synced == 0)
        for sentence in ["\(alice) created the group with \(bob) and \(carol)", "\(alice) made \(bob) an admin", "\(bob) removed \(carol)"] {
            #expect(carolSync.components(separatedBy: sentence).count - 1 == 1, "\(sentence) in:\n\(carolSync)")
        }
        #expect(!carolSync.contains("changed"), "\(carolSync)")
        // Alice's history has them too, once each.
        #expect(try await run(alice, ["sync"]).0 == 0)
        let (_, history) = try await run(alice, ["history", "--group", "trip"])
        for sentence in ["\(alice) made \(bob) an admin", "\(bob) removed \(carol)"] {
            #expect(history.components(separatedBy: sentence).count - 1 == 1, "\(sentence) in:\n\(history)")
        }
        // Bob leaves; alice stays admin.
        #expect(try await run(bob, ["group", "leave", "trip"]).0 == 0)
        let (_, aliceSync) = try await run(alice, ["sync"])
        #expect(aliceSync.contains("\(bob) left"), "\(aliceSync)")
        await harness.finish()
    }
}
