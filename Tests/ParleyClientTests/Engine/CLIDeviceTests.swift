import Foundation
import ParleyClient
import ParleyProtocol
import ParleyRelay
import ParleyTestSupport
import ParleyWire
import Testing

/// Devices through the real `parley` binary: a removed device does not stop the sends of the
/// others (issue 12).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CLIDeviceTests {
    /// alice registered on "phone" with "laptop" and "tablet" linked to it, bob registered on "bob".
    static func aliceWithThreeDevicesAndBob(_ harness: EngineHarness) async throws -> (CLIHomes, String, String) {
        let homes = CLIHomes(harness)
        let (alice, bob) = (homes.name("alice"), homes.name("bob"))
        #expect(try await homes.run("phone", ["register", alice, "--server", harness.baseURL]).0 == 0)
        #expect(try await homes.run("bob", ["register", bob, "--server", harness.baseURL]).0 == 0)
        try await homes.link(from: "phone", to: "laptop")
        try await homes.link(from: "phone", to: "tablet")
        return (homes, alice, bob)
    }

    @Test func removedDeviceDoesNotStopTheOtherDevicesSends() async throws {
        let harness = try await EngineHarness()
        let (homes, alice, bob) = try await Self.aliceWithThreeDevicesAndBob(harness)

        // The tablet is removed behind the phone's back (from the tablet itself, straight at the relay).
        let tablet = try CLI.openDevice(home: homes.home("tablet"))
        let credentials = tablet.account.credentials
        await tablet.close()
        #expect(try await EngineDeviceRemovalTests.removeDevice(credentials.deviceId, as: credentials, harness: harness) == 204)

        let (sent, sendOutput) = try await homes.run("phone", ["send", bob, "still", "here"])
        #expect(sent == 0, "\(sendOutput)")
        #expect(sendOutput.contains("sent: message"), "\(sendOutput)")
        let (synced, bobSync) = try await homes.run("bob", ["sync"])
        #expect(synced == 0, "\(bobSync)")
        #expect(bobSync.contains("still here"), "\(bobSync)")
        let (laptopSynced, laptopSync) = try await homes.run("laptop", ["sync"])
        #expect(laptopSynced == 0, "\(laptopSync)")
        #expect(laptopSync.contains("still here"), "\(laptopSync)")
        let (_, devices) = try await homes.run("phone", ["devices"])
        #expect(!devices.contains("device \(credentials.deviceId) "), "\(devices)")
        await harness.finish()
    }

    /// Issue 12: `parley link join` brings the whole history (2,000 messages, ~500 KB of archive: twice the blob
    /// that cut it on main) and ends with "imported N of M messages"; its output is a pipe here, so no progress
    /// line is drawn.
    @Test func linkJoinImportsTheWholeHistoryAndSaysHowMany() async throws {
        let harness = try await EngineHarness()
        let homes = CLIHomes(harness)
        #expect(try await homes.run("phone", ["register", homes.name("alice"), "--server", harness.baseURL]).0 == 0)
        let store = try DeviceStore.open(at: homes.home("phone") + "/device.sqlite", passphrase: Passphrase(CLI.passphrase))
        let conversation = try store.directConversation(with: "carol")
        let body = String(repeating: "history ", count: 25)
        try store.transaction { store in
            for index in 0..<2_000 {
                _ = try store.insertMessage(
                    NewMessage(
                        conversation: conversation.id, serverId: UUID(), sender: ProtocolAddress(name: "carol", deviceId: 1),
                        outgoing: false, sentAt: Int64(index), receivedAt: Int64(index), body: "\(index) \(body)"))
            }
        }
        try store.close()
        let output = try await homes.link(from: "phone", to: "laptop")
        #expect(output.contains("imported 2000 of 2000 messages"), "\(output)")
        #expect(!output.contains("history:") && !output.contains("\r"), "\(output)")
        let (status, history) = try await homes.run("laptop", ["history", "carol", "--limit", "1"])
        #expect(status == 0, "\(history)")
        #expect(history.contains("1999 history"), "\(history)")
        await harness.finish()
    }

    /// `parley devices remove`: another device (it says on its next command that it was removed, exit 1),
    /// an unknown id, and this device itself (asks first; `--yes` without a terminal; afterwards nothing is sent
    /// from its folder, history stays readable).
    @Test func devicesRemoveAndTheRemovedDeviceSaysSo() async throws {
        let harness = try await EngineHarness()
        let (homes, alice, bob) = try await Self.aliceWithThreeDevicesAndBob(harness)
        let laptopId = try await homes.deviceId("laptop"), tabletId = try await homes.deviceId("tablet")
        #expect(try await homes.run("bob", ["send", alice, "hello"]).0 == 0)

        let (removed, removal) = try await homes.run("phone", ["devices", "remove", "\(laptopId)"])
        #expect(removed == 0, "\(removal)")
        #expect(removal.contains("removed \(alice) device \(laptopId)"), "\(removal)")
        let (_, list) = try await homes.run("phone", ["devices"])
        #expect(!list.contains("device \(laptopId) ") && list.contains("device \(tabletId) "), "\(list)")
        let (unknown, unknownOutput) = try await homes.run("phone", ["devices", "remove", "99"])
        #expect(unknown == 1 && unknownOutput.contains("\(alice) has no device 99"), "\(unknownOutput)")

        // The laptop's next commands: one clear line, exit 1, never "could not reach the relay".
        for command in [["sync"], ["send", bob, "are you there"], ["devices"]] {
            let (status, output) = try await homes.run("laptop", command)
            #expect(status == 1, "\(command): \(output)")
            #expect(output.contains("this device was removed from the account"), "\(command): \(output)")
            #expect(!output.contains("could not reach"), "\(command): \(output)")
        }
        let (sent, sendOutput) = try await homes.run("phone", ["send", bob, "the phone still sends"])
        #expect(sent == 0 && sendOutput.contains("sent: message"), "\(sendOutput)")

        // The tablet removes itself: not without --yes when no terminal asks.
        let (unconfirmed, unconfirmedOutput) = try await homes.run("tablet", ["devices", "remove", "\(tabletId)"])
        #expect(unconfirmed == 1 && unconfirmedOutput.contains("--yes"), "\(unconfirmedOutput)")
        #expect(try await homes.run("tablet", ["sync"]).0 == 0)  // still a device of the account
        let (selfRemoved, selfRemoval) = try await homes.run("tablet", ["devices", "remove", "\(tabletId)", "--yes"])
        #expect(selfRemoved == 0 && selfRemoval.contains("removed this device"), "\(selfRemoval)")
        let (refused, refusal) = try await homes.run("tablet", ["send", bob, "from a removed tablet"])
        #expect(refused == 1 && refusal.contains("this device was removed from the account"), "\(refusal)")
        let (history, historyOutput) = try await homes.run("tablet", ["history", bob])
        #expect(history == 0 && historyOutput.contains("hello"), "\(historyOutput)")
        let (_, finalList) = try await homes.run("phone", ["devices"])
        #expect(!finalList.contains("device \(tabletId) "), "\(finalList)")
        await harness.finish()
    }
}

/// `parley` homes in a harness folder, by label.
struct CLIHomes {
    let harness: EngineHarness
    let suffix = UUID().uuidString.prefix(6).lowercased()

    init(_ harness: EngineHarness) { self.harness = harness }

    func name(_ prefix: String) -> String { "\(prefix)\(suffix)" }

    func home(_ label: String) -> String { harness.dir.appendingPathComponent("home-\(label)").path }

    /// The device id of a home (from its store).
    func deviceId(_ label: String) async throws -> UInt32 {
        let device = try CLI.openDevice(home: home(label))
        let id = device.account.deviceId
        await device.close()
        return id
    }

    func run(_ label: String, _ arguments: [String]) async throws -> (Int32, String) {
        try await CLI.run(CLI.binary, home: home(label), arguments)
    }

    /// `parley link start --yes` on `from`, `parley link join` on `to`; returns what `link join` printed.
    @discardableResult
    func link(from: String, to: String) async throws -> String {
        let start = try ChildProcess.spawn(
            CLI.binary, ["link", "start", "--yes", "--json"], environment: CLI.environment(home: home(from)), captureOutput: true)
        var linkString: String? = nil
        for _ in 0..<1200 where linkString == nil {
            linkString = start.output().split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }.first { $0["event"] as? String == "link" }?["link"] as? String
            if linkString == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let linkString else {
            start.signal(SIGKILL)
            throw CLIFailure("link start printed no link: \(start.output())")
        }
        let (status, output) = try await run(to, ["link", "join", linkString, "--server", harness.baseURL, "--device-name", to])
        let started = await start.wait(timeout: .seconds(60))
        guard status == 0, case .exited(0)? = started else {
            start.signal(SIGKILL)
            throw CLIFailure("link \(from) -> \(to): \(output) / \(start.output())")
        }
        return output
    }
}
