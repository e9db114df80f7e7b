import Foundation
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing

/// A device whose store is restored from an older copy (a backup) reuses message keys its peer
/// already consumed. Its next message must still arrive: the peer reports it, the sender resets
/// the session and resends from its resend log (issue 12).
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EngineRestoreTests {
    @Test func aDeviceRestoredFromABackupStillDeliversItsNextMessage() async throws {
        let harness = try await EngineHarness()
        var alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let path = alice.store.path
        try await alice.send("hello", to: bob.account.name)
        try await GroupTestSupport.settle([bob, alice])
        try await bob.send("hi alice", to: alice.account.name)
        try await GroupTestSupport.settle([alice, bob])

        // The backup: a copy of alice's store files, taken while she is closed.
        await alice.close()
        let backup = harness.dir.appendingPathComponent("alice-backup")
        try FileManager.default.createDirectory(at: backup, withIntermediateDirectories: true)
        let files = [path, path + "-wal", path + "-shm"].filter { FileManager.default.fileExists(atPath: $0) }
        for file in files {
            try FileManager.default.copyItem(atPath: file, toPath: backup.appendingPathComponent((file as NSString).lastPathComponent).path)
        }

        // Life goes on after the backup: both ratchets move.
        alice = try ParleyDevice.open(storePath: path)
        try await alice.send("after the backup 1", to: bob.account.name)
        try await alice.send("after the backup 2", to: bob.account.name)
        try await GroupTestSupport.settle([bob, alice])

        // Restore the backup and send.
        await alice.close()
        for file in [path, path + "-wal", path + "-shm"] { try? FileManager.default.removeItem(atPath: file) }
        for file in files {
            try FileManager.default.copyItem(atPath: backup.appendingPathComponent((file as NSString).lastPathComponent).path, toPath: file)
        }
        alice = try ParleyDevice.open(storePath: path)
        let uid = try await alice.send("after the restore", to: bob.account.name)
        try await GroupTestSupport.settle([bob, alice])

        let history = try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 100).messages
        #expect(history.filter { $0.body == "after the restore" }.count == 1)
        #expect(!history.contains { $0.couldNotDecrypt })
        let sent = try #require(try alice.store.message(uid: uid, sender: alice.account.name))
        #expect(try alice.store.message(id: sent)?.statuses[bob.account.name] == .delivered)
        await alice.close(); await bob.close()
        await harness.finish()
    }
}
