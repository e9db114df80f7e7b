import Foundation
@testable import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyTestSupport
import ParleyWire
import Testing

/// Crashes and restarts on both sides: what was sent arrives, exactly once as the recipient sees it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EngineResilienceTests {
    @Test func aResendAfterTheRelayAcceptedIsStoredOnce() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let uid = try await alice.send("only once", to: bob.account.name)
        #expect(try alice.store.outboxCount() == 0)
        // The state a crash leaves between the relay's acknowledgement and the outbox update:
        // the same message (same id) queued again, and sent again.
        var data = DataMessage()
        data.messageID = uid
        data.timestamp = 1
        data.body = "only once"
        try await alice.enqueueDirect(data, to: bob.account.name, recordInHistory: false)
        await alice.flushOutbox()
        #expect(try alice.store.outboxCount() == 0)

        #expect(await bob.syncOnce())
        let history = try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 10).messages
        #expect(history.map(\.body) == ["only once"])
        await alice.close(); await bob.close()
        await harness.finish()
    }

    @Test func relayRestartMidConversation() async throws {
        let harness = try await EngineHarness()
        let alice = try await harness.register("alice")
        let bob = try await harness.register("bob")
        let aliceLog = await EventLog(alice), bobLog = await EventLog(bob)
        var fast = ParleyDevice.Backoff()
        fast.base = .milliseconds(50)
        fast.cap = .milliseconds(500)
        let backoff = fast
        let loops = [Task { await alice.run(backoff: backoff) }, Task { await bob.run(backoff: backoff) }]
        try await alice.send("before", to: bob.account.name)
        await bobLog.wait(for: "before") { $0.messageBody == "before" }

        try await harness.restartRelay()
        try await alice.send("after the restart", to: bob.account.name)
        try await bob.send("still here", to: alice.account.name)
        await bobLog.wait(for: "after restart") { $0.messageBody == "after the restart" }
        await aliceLog.wait(for: "reply after restart") { $0.messageBody == "still here" }
        #expect(bobLog.count { $0.messageBody == "before" } == 1)
        for loop in loops { loop.cancel() }
        await alice.close(); await bob.close()
        await harness.finish()
    }

    /// The real `parley` CLI killed with SIGKILL at random points of `send`; then it runs again.
    @Test func cliKilledMidSendDeliversEachMessageOnce() async throws {
        let harness = try await EngineHarness()
        let binary = CLI.binary
        let aliceHome = harness.dir.appendingPathComponent("alice-home").path
        let bobHome = harness.dir.appendingPathComponent("bob-home").path
        let suffix = UUID().uuidString.prefix(6).lowercased()
        #expect(try await CLI.run(binary, home: aliceHome, ["register", "alice\(suffix)", "--server", harness.baseURL]).0 == 0)
        #expect(try await CLI.run(binary, home: bobHome, ["register", "bob\(suffix)", "--server", harness.baseURL]).0 == 0)
        #expect(try await CLI.run(binary, home: aliceHome, ["send", "bob\(suffix)", "warm-up"]).0 == 0)
        for i in 0..<12 {
            let process = try CLI.start(binary, home: aliceHome, ["send", "bob\(suffix)", "message \(i)"])
            try await Task.sleep(for: .milliseconds(UInt64.random(in: 0...400)))
            process.signal(SIGKILL)
            _ = await process.wait()
        }
        // Sends whatever the kills left in the outbox.
        #expect(try await CLI.run(binary, home: aliceHome, ["sync"]).0 == 0)
        #expect(try await CLI.run(binary, home: bobHome, ["sync"]).0 == 0)

        let alice = try CLI.openDevice(home: aliceHome)
        let bob = try CLI.openDevice(home: bobHome)
        let sent = try alice.store.messages(in: try alice.store.directConversation(with: bob.account.name).id, limit: 100).messages
        let received = try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 100).messages
        #expect(try alice.store.outboxCount() == 0)
        // Whatever made it into alice's history was delivered, each exactly once.
        #expect(received.compactMap(\.body).sorted() == sent.compactMap(\.body).sorted())
        #expect(Set(received.compactMap(\.body)).count == received.count)
        #expect(received.count >= 1)
        await alice.close(); await bob.close()
        await harness.finish()
    }
}

/// Runs the real `parley` executable (never blocking a concurrency thread: see `ChildProcess`).
///
/// Stores are created sealed, as by default: the passphrase is `passphrase`, given in `PARLEY_PASSPHRASE`
/// (scripts' way). After a `register` or `link join` that succeeded, `parley unlock` runs once for the new
/// store, so that later commands take the store key from the session keyring instead of running Argon2id
/// each time (where the keyring is not available they derive it per command, as the product does).
enum CLI {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/parley").path

    /// The passphrase of every store the CLI tests create.
    static let passphrase = "correct horse battery staple (tests)"

    static func environment(home: String) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["PARLEY_HOME"] = home
        environment["PARLEY_PASSPHRASE"] = passphrase
        for name in ["PARLEY_PASSPHRASE_FILE", "PARLEY_NEW_PASSPHRASE", "PARLEY_NEW_PASSPHRASE_FILE"] { environment[name] = nil }
        return environment
    }

    static func start(_ binary: String, home: String, _ arguments: [String]) throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw CLIFailure("\(binary) is missing: build every product first (swift build --build-tests)")
        }
        return try ChildProcess.spawn(binary, arguments, environment: environment(home: home))
    }

    /// Runs to completion (at most 2 minutes); returns (status, output).
    @discardableResult
    static func run(_ binary: String, home: String, _ arguments: [String]) async throws -> (Int32, String) {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw CLIFailure("\(binary) is missing: build every product first (swift build --build-tests)")
        }
        let result = try await ChildProcess.run(binary, arguments, environment: environment(home: home))
        try await unlockAfterCreation(arguments, status: result.status, home: home)
        return (result.status, result.output)
    }

    /// After a `register` or `link join` that succeeded: one `parley unlock` for the new store.
    static func unlockAfterCreation(_ arguments: [String], status: Int32, home: String) async throws {
        let creates = arguments.first == "register" || arguments.starts(with: ["link", "join"])
        guard creates, status == 0, !arguments.contains("--no-passphrase"), !arguments.contains("--help") else { return }
        let unlock = try await ChildProcess.run(binary, ["unlock"], environment: environment(home: home))
        guard unlock.status == 0 else { throw CLIFailure("parley unlock failed (\(unlock.status)): \(unlock.output)") }
    }

    /// Opens a home's store in the test process as the CLI does: an unsealed one (made by the engine) as it is,
    /// a sealed one with the key `parley unlock` cached, else the passphrase.
    static func openDevice(home: String) throws -> ParleyDevice {
        let path = home + "/device.sqlite"
        do {
            return try ParleyDevice.open(storePath: path, unlock: nil)
        } catch DeviceStoreError.passphraseRequired {
            let unlock = SessionKeyring.lookup(forStore: path).map(StoreUnlock.key) ?? .passphrase(Passphrase(passphrase))
            return try ParleyDevice.open(storePath: path, unlock: unlock)
        }
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
