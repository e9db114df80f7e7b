import Foundation
@testable import ParleyClient
import ParleyTestSupport
import Testing

/// Sealed stores by default, the passphrase sources, `--no-passphrase`, `passphrase change`, and
/// `unlock`/`lock` through the real `parley` binary (Specs/client.md, Specs/storage.md).
@Suite(.serialized, .timeLimit(.minutes(6)))
struct CLIStoreSealingTests {
    /// The CLI environment of `home` with no passphrase source at all (standard input is /dev/null: no terminal).
    static func bareEnvironment(home: String) -> [String: String] {
        var environment = CLI.environment(home: home)
        environment["PARLEY_PASSPHRASE"] = nil
        return environment
    }

    static func run(_ arguments: [String], _ environment: [String: String]) async throws -> (Int32, String) {
        let result = try await ChildProcess.run(CLI.binary, arguments, environment: environment)
        return (result.status, result.output)
    }

    static func isSealed(_ home: String) throws -> Bool {
        do {
            try DeviceStore.open(at: home + "/device.sqlite").close()
            return false
        } catch .passphraseRequired {
            return true
        }
    }

    @Test func withoutAPassphraseSourceRegisterFailsAndCreatesNothing() async throws {
        let harness = try await EngineHarness()
        let home = harness.dir.appendingPathComponent("nosource").path
        let (status, output) = try await Self.run(
            ["register", "nosource\(UUID().uuidString.prefix(6).lowercased())", "--server", harness.baseURL], Self.bareEnvironment(home: home))
        #expect(status == 1)
        #expect(output.hasPrefix("parley: register needs a passphrase for the new store"), "\(output)")
        #expect(output.split(separator: "\n").count == 1, "\(output)")
        #expect(!FileManager.default.fileExists(atPath: home))
        await harness.finish()
    }

    @Test func aPassphraseFileSealsTheStoreAndOpensIt() async throws {
        let harness = try await EngineHarness()
        let home = harness.dir.appendingPathComponent("filed").path
        let file = harness.dir.appendingPathComponent("passphrase.txt").path
        try Data("from a file\nsecond line is ignored\n".utf8).write(to: URL(fileURLWithPath: file))
        let bare = Self.bareEnvironment(home: home)
        var filed = bare
        filed["PARLEY_PASSPHRASE_FILE"] = file
        let name = "filed\(UUID().uuidString.prefix(6).lowercased())"

        #expect(try await Self.run(["register", name, "--server", harness.baseURL, "--passphrase-file", file], bare).0 == 0)
        #expect(try Self.isSealed(home))
        // The file's first line is the passphrase, given as an option or in the environment.
        #expect(try await Self.run(["whoami", "--passphrase-file", file], bare).1.hasPrefix(name))
        #expect(try await Self.run(["whoami"], filed).1.hasPrefix(name))
        var env = bare
        env["PARLEY_PASSPHRASE"] = "from a file"
        #expect(try await Self.run(["whoami"], env).1.hasPrefix(name))
        // No source (no terminal): one line, exit 1.
        let (missing, missingOutput) = try await Self.run(["whoami"], bare)
        #expect(missing == 1)
        #expect(missingOutput.hasPrefix("parley: this device's store is sealed"), "\(missingOutput)")
        // A wrong passphrase: its own exit status, nothing changed.
        let before = try storeRows(home + "/device.sqlite")
        env["PARLEY_PASSPHRASE"] = "from a fil"
        let (wrong, wrongOutput) = try await Self.run(["sync"], env)
        #expect(wrong == 77)
        #expect(wrongOutput == "parley: wrong passphrase for this device's store (nothing was changed)\n", "\(wrongOutput)")
        let unchanged = try storeRows(home + "/device.sqlite") == before
        #expect(unchanged)
        await harness.finish()
    }

    @Test func noPassphraseSaysOnceThatTheStoreIsNotEncrypted() async throws {
        let harness = try await EngineHarness()
        let home = harness.dir.appendingPathComponent("clear").path
        let bare = Self.bareEnvironment(home: home)
        let name = "clear\(UUID().uuidString.prefix(6).lowercased())"
        let (status, output) = try await Self.run(["register", name, "--server", harness.baseURL, "--no-passphrase"], bare)
        #expect(status == 0, "\(output)")
        #expect(output.components(separatedBy: "not encrypted at rest").count == 2, "\(output)")
        #expect(try !Self.isSealed(home))
        // Later commands do not nag, with or without a passphrase in the environment; whoami says it.
        let (sync, syncOutput) = try await Self.run(["sync"], CLI.environment(home: home))
        #expect(sync == 0)
        #expect(!syncOutput.contains("encrypted"), "\(syncOutput)")
        let (_, whoami) = try await Self.run(["whoami"], bare)
        #expect(whoami == "\(name) (device 1) at \(harness.baseURL) (store not sealed: not encrypted at rest)\n", "\(whoami)")
        let (unlock, unlockOutput) = try await Self.run(["unlock"], bare)
        #expect(unlock == 0)
        #expect(unlockOutput.contains("not sealed"), "\(unlockOutput)")
        let (change, changeOutput) = try await Self.run(["passphrase", "change"], CLI.environment(home: home))
        #expect(change == 1)
        #expect(changeOutput.contains("not sealed"), "\(changeOutput)")
        await harness.finish()
    }

    @Test func passphraseChangeMakesOnlyTheNewPassphraseWork() async throws {
        let harness = try await EngineHarness()
        let home = harness.dir.appendingPathComponent("changer").path
        let name = "changer\(UUID().uuidString.prefix(6).lowercased())"
        let old = CLI.environment(home: home)
        #expect(try await Self.run(["register", name, "--server", harness.baseURL], old).0 == 0)
        var change = old
        change["PARLEY_NEW_PASSPHRASE"] = "the new one"
        let (status, output) = try await Self.run(["passphrase", "change"], change)
        #expect(status == 0, "\(output)")
        #expect(try await Self.run(["whoami"], old).0 == 77)
        var new = Self.bareEnvironment(home: home)
        new["PARLEY_PASSPHRASE"] = "the new one"
        #expect(try await Self.run(["whoami"], new).1.hasPrefix(name))
        // The old passphrase does not change it back.
        var again = old
        again["PARLEY_NEW_PASSPHRASE"] = "anything"
        #expect(try await Self.run(["passphrase", "change"], again).0 == 77)
        #expect(try await Self.run(["whoami"], new).0 == 0)
        await harness.finish()
    }

    @Test func unlockKeepsTheKeyForTheSessionAndLockForgetsIt() async throws {
        if let reason = SessionKeyring.availability() {
            print("CLIStoreSealingTests: skipping unlock/lock: \(reason)")
            return
        }
        let harness = try await EngineHarness()
        let home = harness.dir.appendingPathComponent("unlocker").path
        let name = "unlocker\(UUID().uuidString.prefix(6).lowercased())"
        let withPassphrase = CLI.environment(home: home)
        let bare = Self.bareEnvironment(home: home)
        let path = home + "/device.sqlite"
        #expect(try await Self.run(["register", name, "--server", harness.baseURL], withPassphrase).0 == 0)
        // Locked: no source, no command.
        #expect(try await Self.run(["whoami"], bare).0 == 1)
        let (unlock, unlockOutput) = try await Self.run(["unlock", "--timeout", "5"], withPassphrase)
        #expect(unlock == 0)
        #expect(unlockOutput.hasPrefix("unlocked \(home) for 5 min"), "\(unlockOutput)")
        #expect(SessionKeyring.lookup(forStore: path) != nil)
        // Unlocked: commands need no passphrase (and a wrong one in the environment is not even read).
        #expect(try await Self.run(["whoami"], bare).1.hasPrefix(name))
        var wrong = bare
        wrong["PARLEY_PASSPHRASE"] = "wrong"
        #expect(try await Self.run(["sync"], wrong).0 == 0)
        // A wrong passphrase does not unlock.
        SessionKeyring.forget(forStore: path)
        #expect(try await Self.run(["unlock"], wrong).0 == 77)
        #expect(SessionKeyring.lookup(forStore: path) == nil)
        #expect(try await Self.run(["unlock"], withPassphrase).0 == 0)
        let (lock, lockOutput) = try await Self.run(["lock"], bare)
        #expect(lock == 0)
        #expect(lockOutput == "locked \(home)\n", "\(lockOutput)")
        #expect(SessionKeyring.lookup(forStore: path) == nil)
        #expect(try await Self.run(["whoami"], bare).0 == 1)
        #expect(try await Self.run(["lock"], bare).1 == "\(home) was not unlocked\n")
        await harness.finish()
    }
}
