import Foundation
@testable import ParleyClient
import ParleyTestSupport
import Testing

/// `parley sync` exits only after its outbox (the delivery receipts of what it received included) was sent,
/// or says on standard error why entries stay queued and exits 75 (Specs/client.md §9).
@Suite(.serialized, .timeLimit(.minutes(6)))
struct CLISyncTests {
    /// Before the fix, the flush at the end of the backlog returned at once when the receive path's own flush
    /// was running, the command closed the device, and most receipts waited for the next command.
    @Test func syncSendsTheReceiptsOfWhatItReceivedBeforeExiting() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let bobHome = harness.dir.appendingPathComponent("bob-home").path
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["register", "bob\(suffix)", "--server", harness.baseURL]).0 == 0)
        let alice = try await harness.register("alice")
        let count = 40
        var uids: [String] = []
        for i in 0..<count { uids.append(try await alice.send("message \(i)", to: "bob\(suffix)")) }
        #expect(try alice.store.outboxCount() == 0)

        let (status, output) = try await CLI.run(CLI.binary, home: bobHome, ["sync"])
        #expect(status == 0, "\(output)")
        #expect(output.components(separatedBy: ": message ").count - 1 == count, "\(output)")

        // Bob runs nothing else: alice's next sync sees every message delivered.
        await alice.syncOnce(timeout: .seconds(60))
        let delivered = try uids.filter { uid in
            guard let id = try alice.store.message(uid: uid, sender: alice.account.name) else { return false }
            return try alice.store.message(id: id)?.statuses["bob\(suffix)"] == .delivered
        }
        #expect(delivered.count == count, "\(delivered.count) of \(count) delivered")
        let bob = try CLI.openDevice(home: bobHome)
        #expect(try bob.store.outboxCount() == 0)
        await bob.close()
        await alice.close()
        await harness.finish()
    }

    /// The relay stops while `sync` sends a long outbox: it says how many entries stay queued and why, and
    /// exits 75; the entries go with the next sync.
    @Test func syncWhoseRelayStopsMidwayStatesWhyAndExits75() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let bobHome = harness.dir.appendingPathComponent("bob-home").path
        try FileManager.default.createDirectory(atPath: bobHome, withIntermediateDirectories: true)
        let bob = try await ParleyDevice.register(name: "bob\(suffix)", serverURL: harness.baseURL, storePath: bobHome + "/device.sqlite")
        let alice = try await harness.register("alice")
        try await bob.send("hello", to: alice.account.name)  // a contact and sessions first
        // A long outbox, queued without sending (as `send` leaves it when the relay is down).
        let count = 300
        for i in 0..<count {
            var data = DataMessage()
            data.messageID = UUID().uuidString.lowercased()
            data.timestamp = UInt64(try bob.store.nextSendTimestamps(now: ParleyDevice.nowMillis()))
            data.body = "queued \(i)"
            try await bob.enqueueDirect(data, to: alice.account.name)
        }
        #expect(try bob.store.outboxCount() == count)
        await bob.close()

        let sync = try ChildProcess.spawn(CLI.binary, ["sync"], environment: CLI.environment(home: bobHome), captureOutput: true)
        defer { if let path = sync.outputPath { try? FileManager.default.removeItem(atPath: path) } }
        // Stop the relay once the first queued message went out.
        var sawSend = false
        for _ in 0..<3000 where !sawSend && sync.termination == nil {
            sawSend = sync.output().contains("sent by \(alice.account.name)")
            if !sawSend { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(sawSend, "\(sync.output())")
        try await harness.stopRelay()
        let termination = await sync.wait(timeout: .seconds(120))
        let output = sync.output()
        #expect(termination == .exited(75), "\(String(describing: termination)): \(output)")
        // (Usually "cannot reach the relay at URL: connection refused"; a request cut off by the stop may read
        // "the relay closed the connection" or be answered 503 by the stopping relay.)
        #expect(output.contains(" outbox entries left queued: "), "\(output)")
        #expect(output.contains("the next command that reaches the relay sends them"), "\(output)")
        #expect(!output.contains("errno"), "\(output)")

        // The next sync sends the rest, and exits 0.
        try await harness.startRelay()
        let (status, rest) = try await CLI.run(CLI.binary, home: bobHome, ["sync"])
        #expect(status == 0, "\(rest)")
        let reopened = try CLI.openDevice(home: bobHome)
        #expect(try reopened.store.outboxCount() == 0)
        await reopened.close()
        await alice.close()
        await harness.finish()
    }
}
