import Foundation
import ParleyClient
import ParleyProtocol
import ParleyTestSupport
import Testing

/// `parley chat` in a real terminal (tmux): typed lines are sent, incoming messages appear.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct CLIChatTests {
    static func tmux(_ arguments: [String]) async throws -> (Int32, String) {
        let result = try await ChildProcess.run("/usr/bin/env", ["tmux"] + arguments, timeout: .seconds(30))
        return (result.status, result.output)
    }

    @Test func chatUnderTmux() async throws {
        let harness = try await EngineHarness()
        let aliceHome = harness.dir.appendingPathComponent("alice").path
        try FileManager.default.createDirectory(atPath: aliceHome, withIntermediateDirectories: true)
        let alice = try await ParleyDevice.register(name: "alice-\(UUID().uuidString.prefix(6).lowercased())", serverURL: harness.baseURL, storePath: aliceHome + "/device.sqlite")
        let bob = try await harness.register("bob")
        let aliceName = alice.account.name
        await alice.close()

        let session = "parley-chat-\(UUID().uuidString.prefix(8))"
        let command = "env PARLEY_HOME=\(aliceHome) \(CLI.binary) chat \(bob.account.name)"
        #expect(try await Self.tmux(["new-session", "-d", "-s", session, "-x", "160", "-y", "40", command]).0 == 0)
        do {
            func screen() async throws -> String { try await Self.tmux(["capture-pane", "-p", "-t", session]).1 }
            func waitForScreen(_ text: String) async throws -> Bool {
                for _ in 0..<200 {
                    if try await screen().contains(text) { return true }
                    try await Task.sleep(for: .milliseconds(100))
                }
                return false
            }
            #expect(try await waitForScreen("chat with \(bob.account.name)"))

            _ = try await Self.tmux(["send-keys", "-t", session, "hello from a terminal", "Enter"])
            var got = false
            for _ in 0..<50 where !got {
                _ = await bob.syncOnce(timeout: .seconds(5))
                let conversation = try bob.store.directConversation(with: aliceName)
                got = try bob.store.messages(in: conversation.id, limit: 10).messages.contains { $0.body == "hello from a terminal" }
                if !got { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(got)

            try await bob.send("answer shown in the terminal", to: aliceName)
            #expect(try await waitForScreen("\(bob.account.name): answer shown in the terminal"))

            _ = try await Self.tmux(["send-keys", "-t", session, "/quit", "Enter"])
            var ended = false
            for _ in 0..<100 where !ended {
                ended = try await Self.tmux(["has-session", "-t", session]).0 != 0
                if !ended { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(ended)
        } catch {
            _ = try? await Self.tmux(["kill-session", "-t", session])
            throw error
        }
        _ = try? await Self.tmux(["kill-session", "-t", session])
        await bob.close()
        await harness.finish()
    }
}
