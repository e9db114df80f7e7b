import Foundation
@testable import ParleyClient
import ParleyTestSupport
import ParleyWire
import Testing

/// Errors through the real `parley` binary: one clear line on standard error and a non-zero exit
/// (Specs/client.md §9).
@Suite(.serialized, .timeLimit(.minutes(6)))
struct CLIErrorTests {
    /// Runs a shell pipeline with PARLEY_HOME set (for standard input and pipes).
    static func shell(_ script: String, home: String) async throws -> (Int32, String) {
        let result = try await ChildProcess.run("/bin/bash", ["-c", script], environment: CLI.environment(home: home))
        return (result.status, result.output)
    }

    @Test func aStoppedRelayIsOneLineAndANonZeroExitNeverAHangOrUnknown() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("alice-home").path
        let bob = try await harness.register("bob")
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "alice\(suffix)", "--server", harness.baseURL]).0 == 0)
        #expect(try await CLI.run(CLI.binary, home: home, ["send", bob.account.name, "hi"]).0 == 0)
        try await harness.stopRelay()
        let line = "parley: cannot reach the relay at \(harness.baseURL): connection refused"

        let (devices, devicesOutput) = try await CLI.run(CLI.binary, home: home, ["devices"])
        #expect(devices == 1)
        #expect(devicesOutput == line + "\n", "\(devicesOutput)")

        let (sync, syncOutput) = try await CLI.run(CLI.binary, home: home, ["sync"])
        #expect(sync == 1)
        #expect(syncOutput.hasPrefix(line), "\(syncOutput)")
        #expect(!syncOutput.contains("errno"), "\(syncOutput)")

        // Before: `typing` waited for a connection for ever, `presence` printed "unknown" and exited 0.
        let (typing, typingOutput) = try await CLI.run(CLI.binary, home: home, ["typing", bob.account.name])
        #expect(typing == 1)
        #expect(typingOutput == line + "\n", "\(typingOutput)")
        let (presence, presenceOutput) = try await CLI.run(CLI.binary, home: home, ["presence", bob.account.name])
        #expect(presence == 1)
        #expect(presenceOutput == line + "\n", "\(presenceOutput)")
        #expect(!presenceOutput.contains("unknown"))
        await bob.close()
        await harness.finish()
    }

    @Test func aServerThatIsNotAnHTTPURLIsRefusedAndNamesFollowTheRelaysRule() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("carol-home").path
        for server in ["ftp://127.0.0.1:\(harness.port)", "127.0.0.1:\(harness.port)", "http://", "relay.example"] {
            let (status, output) = try await CLI.run(CLI.binary, home: home, ["register", "carol\(suffix)", "--server", server])
            #expect(status == 1, "\(server): \(output)")
            #expect(output == "parley: --server must be an http:// or https:// URL such as http://127.0.0.1:8080, not \"\(server)\"\n", "\(output)")
            #expect(!FileManager.default.fileExists(atPath: home + "/device.sqlite"))
        }
        // The help states the relay's rule (one definition: ParleyWire.AccountNameRule), and the CLI applies it.
        let (_, help) = try await CLI.run(CLI.binary, home: home, ["register", "--help"])
        let flowed = help.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // the help is wrapped
        #expect(flowed.contains(AccountNameRule.summary), "\(help)")
        #expect(!flowed.contains("'.'"), "\(help)")
        for bad in ["Carol\(suffix)", "carol.\(suffix)", "ab", String(repeating: "c", count: 33)] {
            let (status, output) = try await CLI.run(CLI.binary, home: home, ["register", bad, "--server", harness.baseURL])
            #expect(status == 1, "\(bad): \(output)")
            #expect(output.contains("cannot be an account name") && output.contains(AccountNameRule.summary), "\(output)")
            #expect(output.components(separatedBy: "\n").count == 2, "\(output)")
        }
        // Names the rule accepts, the relay accepts.
        let longest = "c" + String(suffix) + String(repeating: "-", count: 32 - 1 - suffix.count)
        #expect(AccountNameRule.violation(in: longest) == nil)
        let (ok, okOutput) = try await CLI.run(CLI.binary, home: home, ["register", longest, "--server", harness.baseURL])
        #expect(ok == 0, "\(okOutput)")
        await harness.finish()
    }

    @Test func sendRefusesUnknownRecipientsEmptyAndOversizedTextAndReadsStandardInput() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("alice-home").path
        let bob = try await harness.register("bob")
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "alice\(suffix)", "--server", harness.baseURL]).0 == 0)

        // An unknown recipient: refused, not made a contact, nothing in the history.
        let stranger = "nobody\(suffix)"
        let (unknown, unknownOutput) = try await CLI.run(CLI.binary, home: home, ["send", stranger, "hello?"])
        #expect(unknown == 1)
        #expect(unknownOutput == "parley: no account named \(stranger) at the relay (nothing was sent)\n", "\(unknownOutput)")
        let (badName, badNameOutput) = try await CLI.run(CLI.binary, home: home, ["send", "Bob!", "hello?"])
        #expect(badName == 1)
        #expect(badNameOutput.contains("is not an account name"), "\(badNameOutput)")

        // Empty text: refused.
        for empty in ["", "   "] {
            let (status, output) = try await CLI.run(CLI.binary, home: home, ["send", bob.account.name, empty])
            #expect(status == 1)
            #expect(output == "parley: refusing to send an empty message\n", "\(output)")
        }
        let (emptyInput, emptyInputOutput) = try await Self.shell("printf '\\n' | '\(CLI.binary)' send \(bob.account.name) -", home: home)
        #expect(emptyInput == 1, "\(emptyInputOutput)")
        #expect(emptyInputOutput.contains("refusing to send an empty message"), "\(emptyInputOutput)")

        // Over the limit: a size error naming it, as an argument and on standard input.
        let limit = ParleyDevice.maxMessageTextBytes
        let (long, longOutput) = try await CLI.run(CLI.binary, home: home, ["send", bob.account.name, String(repeating: "a", count: limit + 1)])
        #expect(long == 1)
        #expect(longOutput == "parley: the message is \(limit + 1) bytes; the limit is \(limit) bytes (64 KiB) of UTF-8 text\n", "\(longOutput)")
        let (longInput, longInputOutput) = try await Self.shell(
            "head -c \(4 * limit) /dev/zero | tr '\\0' a | '\(CLI.binary)' send \(bob.account.name) -", home: home)
        #expect(longInput == 1, "\(longInputOutput)")
        #expect(longInputOutput.contains("longer than the limit of \(limit) bytes (64 KiB)"), "\(longInputOutput)")

        // Exactly the limit, from standard input, arrives.
        let (atLimit, atLimitOutput) = try await Self.shell(
            "{ head -c \(limit - 10) /dev/zero | tr '\\0' b; printf 'from stdin\\n'; } | '\(CLI.binary)' send \(bob.account.name) -", home: home)
        #expect(atLimit == 0, "\(atLimitOutput)")
        #expect(atLimitOutput.contains("sent: message"), "\(atLimitOutput)")

        let alice = try CLI.openDevice(home: home)
        #expect(try alice.store.contact(account: stranger) == nil)
        #expect(try alice.store.conversations().count == 1)  // bob's only
        let sent = try alice.store.messages(in: try alice.store.directConversation(with: bob.account.name).id, limit: 10).messages
        #expect(sent.count == 1)
        await alice.close()
        _ = await bob.syncOnce(timeout: .seconds(60))
        let received = try bob.store.messages(in: try bob.store.directConversation(with: "alice\(suffix)").id, limit: 10).messages
        #expect(received.count == 1)
        #expect(received.first?.body?.utf8.count == limit)
        #expect(received.first?.body?.hasSuffix("bfrom stdin") == true)
        await bob.close()
        await harness.finish()
    }

    @Test func syncIntoAClosedPipeExitsQuietlyAndFinishesItsWork() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("bob-home").path
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "bob\(suffix)", "--server", harness.baseURL]).0 == 0)
        let alice = try await harness.register("alice")
        let count = 150
        for i in 0..<count { try await alice.send("line \(i)", to: "bob\(suffix)") }

        let (status, output) = try await Self.shell("'\(CLI.binary)' sync | head -1; echo \"exit=${PIPESTATUS[0]}\"", home: home)
        #expect(status == 0)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 2, "\(output)")
        #expect(lines.last == "exit=0", "\(output)")
        // The command did all its work: every message stored, every receipt sent.
        let bob = try CLI.openDevice(home: home)
        #expect(try bob.store.messages(in: try bob.store.directConversation(with: alice.account.name).id, limit: 500).messages.count == count)
        #expect(try bob.store.outboxCount() == 0)
        await bob.close()
        await alice.close()
        await harness.finish()
    }

    @Test func globalOptionsWorkBeforeOrAfterTheSubcommand() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("dave-home").path
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "dave\(suffix)", "--server", harness.baseURL]).0 == 0)
        let expected = "{\"account\":\"dave\(suffix)\",\"device\":1,\"sealed\":true,\"server\":\"\(harness.baseURL)\"}\n"
        for arguments in [["--json", "whoami"], ["whoami", "--json"], ["--home", home, "--json", "whoami"], ["--json", "whoami", "--home", home]] {
            let (status, output) = try await CLI.run(CLI.binary, home: "/nonexistent-\(suffix)", arguments + (arguments.contains("--home") ? [] : ["--home", home]))
            #expect(status == 0, "\(arguments): \(output)")
            #expect(output == expected, "\(arguments): \(output)")
        }
        let (grouped, groupedOutput) = try await CLI.run(CLI.binary, home: home, ["--json", "group", "list"])
        #expect(grouped == 0, "\(groupedOutput)")
        await harness.finish()
    }
}
