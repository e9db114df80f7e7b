import Crypto
import Foundation
import ParleyClient
import ParleyRelay
import ParleyTestSupport
import Testing

/// `parley push` through the real binary (issue 12): register a browser-exported subscription file, status
/// (the endpoint's host only), a content-free push while offline, sync, unregister; and the default relay's
/// refusal of a loopback endpoint as one clear line with exit status 1.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CLIPushTests {
    static func subscriptionFile(_ harness: EngineHarness, _ endpoint: String) throws -> String {
        let key = EnginePushTests.b64(P256.KeyAgreement.PrivateKey().publicKey.x963Representation)
        let auth = EnginePushTests.b64(Data((0..<16).map { _ in UInt8.random(in: 0...255) }))
        let json = #"{"endpoint":"\#(endpoint)","expirationTime":null,"keys":{"p256dh":"\#(key)","auth":"\#(auth)"}}"#
        let path = harness.dir.appendingPathComponent("subscription-\(UUID().uuidString).json").path
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func registerStatusPushSyncAndUnregister() async throws {
        let harness = try await EnginePushTests.insecurePushHarness()
        let receiver = try await PushReceiver.start()
        let homes = CLIHomes(harness)
        let (alice, bob) = (homes.name("alice"), homes.name("bob"))
        #expect(try await homes.run("alice", ["register", alice, "--server", harness.baseURL]).0 == 0)
        #expect(try await homes.run("bob", ["register", bob, "--server", harness.baseURL]).0 == 0)

        let (notYet, notYetOutput) = try await homes.run("bob", ["push", "status"])
        #expect(notYet == 0 && notYetOutput.contains("push: not registered"), "\(notYetOutput)")
        let (keyStatus, keyOutput) = try await homes.run("bob", ["push", "key"])
        #expect(keyStatus == 0 && keyOutput.trimmingCharacters(in: .whitespacesAndNewlines).count == 87, "\(keyOutput)")

        let file = try Self.subscriptionFile(harness, receiver.url("/push/secret-path"))
        let (registered, registration) = try await homes.run("bob", ["push", "register", "--subscription", file])
        #expect(registered == 0 && registration.contains("push registered: 127.0.0.1"), "\(registration)")
        let (statusCode, status) = try await homes.run("bob", ["push", "status"])
        #expect(statusCode == 0 && status.contains("push: registered at 127.0.0.1"), "\(status)")
        #expect(!status.contains("secret-path"), "status shows only the host: \(status)")

        #expect(try await homes.run("alice", ["send", bob, "wake", "up"]).0 == 0)
        #expect(await EnginePushTests.waitFor(EnginePushTests.pushBound) { await receiver.log.pushes(to: "/push/secret-path").count >= 1 })
        let push = try #require(await receiver.log.pushes(to: "/push/secret-path").first)
        #expect(push.bodyBytes == 0 && push.vapidValid)
        #expect(push.publicKey == keyOutput.trimmingCharacters(in: .whitespacesAndNewlines))
        let (synced, sync) = try await homes.run("bob", ["sync"])
        #expect(synced == 0 && sync.contains("wake up"), "\(sync)")

        let (unregistered, unregistration) = try await homes.run("bob", ["push", "unregister"])
        #expect(unregistered == 0 && unregistration.contains("push unregistered (was 127.0.0.1)"), "\(unregistration)")
        let (_, after) = try await homes.run("bob", ["push", "status"])
        #expect(after.contains("push: not registered"), "\(after)")

        // Wrong use: a clear line and a non-zero exit.
        let (both, bothOutput) = try await homes.run("bob", ["push", "register", receiver.url("/push/x"), "--subscription", file])
        #expect(both != 0 && bothOutput.contains("one of them"), "\(bothOutput)")
        try Data(#"{"endpoint":"https://push.example.net/x","expirationTime":1000}"#.utf8).write(to: URL(fileURLWithPath: file))
        let (expired, expiredOutput) = try await homes.run("bob", ["push", "register", "--subscription", file])
        #expect(expired == 1 && expiredOutput.contains("the subscription has expired"), "\(expiredOutput)")
        try await receiver.stop()
        await harness.finish()
    }

    @Test func defaultRelayRefusesALoopbackEndpointWithOneLine() async throws {
        let harness = try await EngineHarness()
        let homes = CLIHomes(harness)
        let bob = homes.name("bob")
        #expect(try await homes.run("bob", ["register", bob, "--server", harness.baseURL]).0 == 0)
        let (status, output) = try await homes.run("bob", ["push", "register", "https://127.0.0.1:9/push/x"])
        #expect(status == 1, "\(output)")
        #expect(output.contains("parley: the relay refused the push endpoint: endpoint host is not a public address"), "\(output)")
        #expect(output.split(separator: "\n").count == 1, "\(output)")
        let (_, after) = try await homes.run("bob", ["push", "status"])
        #expect(after.contains("push: not registered"), "\(after)")
        await harness.finish()
    }
}
