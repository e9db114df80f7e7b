import Foundation
import ParleyProtocol
import Testing

@testable import ParleyClient

/// A changed safety number through the CLI (issue 12): `send`, `history` and `devices` warn until
/// the user looks at the new number; history has the line; a verified contact stays refused.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct CLIIdentityChangeTests {
    /// Bob's device in a CLI home and Alice's engine device, with sessions both ways.
    static func setUp(_ harness: EngineHarness) async throws -> (alice: ParleyDevice, bob: ParleyDevice, bobHome: String) {
        let bobHome = harness.dir.appendingPathComponent("bob-home").path
        try FileManager.default.createDirectory(atPath: bobHome, withIntermediateDirectories: true)
        let bob = try await ParleyDevice.register(
            name: "bob-\(UUID().uuidString.prefix(6).lowercased())", serverURL: harness.baseURL, storePath: bobHome + "/device.sqlite")
        let alice = try await harness.register("alice")
        try await alice.send("hi bob", to: bob.account.name)
        #expect(await bob.syncOnce())
        try await bob.send("hi alice", to: alice.account.name)
        #expect(await alice.syncOnce())
        #expect(await bob.syncOnce())
        return (alice, bob, bobHome)
    }

    @Test func sendHistoryAndDevicesWarnUntilTheNumberIsSeen() async throws {
        let harness = try await EngineHarness()
        let (alice, bob, bobHome) = try await Self.setUp(harness)
        let aliceName = alice.account.name
        let message = try await EngineIdentityChangeTests.messageUnderNewIdentity(
            try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: "new phone", tamper: false)
        await bob.close()
        try await EngineIdentityChangeTests.inject(message, as: alice, to: bob, harness: harness)

        let warning = "WARNING: your safety number with \(aliceName) changed"
        let (syncStatus, syncOutput) = try await CLI.run(CLI.binary, home: bobHome, ["sync"])
        #expect(syncStatus == 0)
        #expect(syncOutput.contains("new phone"))

        // Each command that sends to or shows Alice warns, until the number is seen.
        let (sendStatus, sendOutput) = try await CLI.run(CLI.binary, home: bobHome, ["send", aliceName, "got it"])
        #expect(sendStatus == 0)
        #expect(sendOutput.contains("sent: message"))
        #expect(sendOutput.contains(warning), "send did not warn: \(sendOutput)")
        let (historyStatus, historyOutput) = try await CLI.run(CLI.binary, home: bobHome, ["history", aliceName])
        #expect(historyStatus == 0)
        #expect(historyOutput.contains("-- your safety number with \(aliceName) changed"), "\(historyOutput)")
        #expect(historyOutput.contains(warning))
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["devices", aliceName]).1.contains(warning))

        let (numberStatus, _) = try await CLI.run(CLI.binary, home: bobHome, ["safety-number", aliceName])
        #expect(numberStatus == 0)
        let (_, afterOutput) = try await CLI.run(CLI.binary, home: bobHome, ["send", aliceName, "seen"])
        #expect(afterOutput.contains("sent: message"))
        #expect(!afterOutput.contains("WARNING"), "still warning after the number was seen: \(afterOutput)")
        // The line stays in the history.
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["history", aliceName]).1.contains("your safety number with \(aliceName) changed"))
        await alice.close()
        await harness.finish()
    }

    @Test func aVerifiedContactIsRefusedUntilTrusted() async throws {
        let harness = try await EngineHarness()
        let (alice, bob, bobHome) = try await Self.setUp(harness)
        let aliceName = alice.account.name
        let message = try await EngineIdentityChangeTests.messageUnderNewIdentity(
            try IdentityKeyPair.generate(), from: alice, to: bob, harness: harness, text: "trust me", tamper: false)
        await bob.close()
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["verify", aliceName]).0 == 0)
        try await EngineIdentityChangeTests.inject(message, as: alice, to: bob, harness: harness)
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["sync"]).0 == 0)

        let (status, output) = try await CLI.run(CLI.binary, home: bobHome, ["send", aliceName, "hello?"])
        #expect(status == 1, "\(output)")
        #expect(output.contains("failed: message"))
        #expect(output.contains("\(aliceName) was verified"))
        #expect(output.contains("parley trust \(aliceName)"))
        // Seeing the number is not enough; trusting is.
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["safety-number", aliceName]).1.contains("WARNING"))
        #expect(try await CLI.run(CLI.binary, home: bobHome, ["trust", aliceName]).0 == 0)
        let (afterStatus, afterOutput) = try await CLI.run(CLI.binary, home: bobHome, ["send", aliceName, "trusted"])
        #expect(afterStatus == 0, "\(afterOutput)")
        #expect(!afterOutput.contains("WARNING"))
        await alice.close()
        await harness.finish()
    }

    /// `register` shows the recovery code once; `register --recover` takes the name back with it (read from a
    /// file here; a terminal would prompt without echo); without it, or with a wrong one, the name stays taken.
    @Test func registerShowsTheRecoveryCodeAndRecoverTakesTheNameBack() async throws {
        let harness = try await EngineHarness()
        let name = "carol\(UUID().uuidString.prefix(6).lowercased())"
        let oldHome = harness.dir.appendingPathComponent("old").path
        let newHome = harness.dir.appendingPathComponent("new").path
        let (status, output) = try await CLI.run(CLI.binary, home: oldHome, ["register", name, "--server", harness.baseURL])
        #expect(status == 0, "\(output)")
        #expect(output.contains("recovery code (shown only now"))
        let code = try #require(output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.first {
            $0.count == 39 && $0.split(separator: "-").count == 8
        })

        let (takenStatus, takenOutput) = try await CLI.run(CLI.binary, home: newHome, ["register", name, "--server", harness.baseURL])
        #expect(takenStatus == 1)
        #expect(takenOutput.contains("the name \(name) is taken"))
        #expect(takenOutput.contains("parley register \(name) --recover"))

        let codeFile = harness.dir.appendingPathComponent("code.txt").path
        try Data("0000-0000-0000-0000-0000-0000-0000-0000\n".utf8).write(to: URL(fileURLWithPath: codeFile))
        let (wrongStatus, wrongOutput) = try await CLI.run(
            CLI.binary, home: newHome, ["register", name, "--server", harness.baseURL, "--recover", "--recovery-code-file", codeFile])
        #expect(wrongStatus == 1)
        #expect(wrongOutput.contains("account recovery refused: wrong recovery code"), "\(wrongOutput)")
        #expect(!FileManager.default.fileExists(atPath: newHome + "/device.sqlite"))

        try Data((code + "\n").utf8).write(to: URL(fileURLWithPath: codeFile))
        let (recoverStatus, recoverOutput) = try await CLI.run(
            CLI.binary, home: newHome, ["register", name, "--server", harness.baseURL, "--recover", "--recovery-code-file", codeFile])
        #expect(recoverStatus == 0, "\(recoverOutput)")
        #expect(recoverOutput.contains("recovered \(name), device 1"))
        #expect(recoverOutput.contains("recovery code (shown only now"))
        #expect(!recoverOutput.contains(code), "the used code was shown again instead of a new one")
        // The old device is out.
        let (oldStatus, _) = try await CLI.run(CLI.binary, home: oldHome, ["devices"])
        #expect(oldStatus == 1)
        #expect(try await CLI.run(CLI.binary, home: newHome, ["devices"]).0 == 0)
        await harness.finish()
    }
}
