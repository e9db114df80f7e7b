import Foundation
import GRDB
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A device whose store gets an older copy of a session row back (issue 10, defect 4a) keeps
/// working: the engine discards the refused row and starts a new session, so its next message
/// arrives instead of being sent under reused message keys (which the peer drops as a replay).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineRollbackTests {
    static func sessionRows(_ path: String, peer: String) throws -> [Row] {
        try withRawDatabase(path) { db in try Row.fetchAll(db, sql: "SELECT * FROM session WHERE name = ?", arguments: [peer]) }
    }

    @Test func aSessionRestoredFromAnOlderCopyIsReplacedAndTheNextMessageArrives() async throws {
        let harness = try await EngineHarness()
        var alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let path = alice.store.path
        try await alice.send("one", to: bob.account.name)
        #expect(await bob.syncOnce())
        try await bob.send("answer", to: alice.account.name)
        #expect(await alice.syncOnce())
        await alice.close()
        let old = try Self.sessionRows(path, peer: bob.account.name)
        #expect(old.count == 1)

        // Two more messages move Alice's sending chain on; then the older row is put back.
        alice = try ParleyDevice.open(storePath: path)
        try await alice.send("two", to: bob.account.name)
        try await alice.send("three", to: bob.account.name)
        #expect(await bob.syncOnce())
        await alice.close()
        try RollbackTests.restore(path, "session", old)

        let bobLog = await EventLog(bob)
        alice = try ParleyDevice.open(storePath: path)
        try await alice.send("after the restore", to: bob.account.name)
        #expect(try alice.store.outboxCount() == 0)
        #expect(await bob.syncOnce())
        await bobLog.wait(for: "the message sent after the restore") { $0.messageBody == "after the restore" }
        // A new session replaced the refused row.
        #expect(try Self.sessionRows(path, peer: bob.account.name) != old)
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
