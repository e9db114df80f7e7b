import Foundation
@testable import ParleyClient
import ParleyTestSupport
import Testing

/// `parley info` (receipts per recipient, device and member) and the history's compact summary, through the
/// real binary.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct CLIReceiptTests {
    /// The message id in `send`'s line "sent: message <id> to <whom>".
    static func sentId(_ output: String) throws -> String {
        guard let range = output.range(of: "message "), let end = output[range.upperBound...].firstIndex(of: " ") else {
            throw CLIFailure("no message id in: \(output)")
        }
        return String(output[range.upperBound..<end])
    }

    @Test func infoShowsEachDeviceAndHistoryTheSummary() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("alice-home").path
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "alice\(suffix)", "--server", harness.baseURL]).0 == 0)
        let phone = try await harness.register("bob")
        let laptop = try await GroupTestSupport.link(phone, harness: harness, name: "laptop")
        let bob = phone.account.name

        let (sent, sendOutput) = try await CLI.run(CLI.binary, home: home, ["send", bob, "hello", "devices"])
        #expect(sent == 0, "\(sendOutput)")
        let uid = try Self.sentId(sendOutput)
        _ = await phone.syncOnce(timeout: .seconds(60))
        _ = await laptop.syncOnce(timeout: .seconds(60))
        #expect(try await CLI.run(CLI.binary, home: home, ["sync"]).0 == 0)

        var (status, history) = try await CLI.run(CLI.binary, home: home, ["history", bob])
        #expect(status == 0)
        #expect(history.contains("me → \(bob): hello devices  [delivered 2/2]"), "\(history)")

        _ = try await phone.markRead(try phone.store.directConversation(with: "alice\(suffix)").id)
        #expect(try await CLI.run(CLI.binary, home: home, ["sync"]).0 == 0)
        (status, history) = try await CLI.run(CLI.binary, home: home, ["history", bob])
        #expect(history.contains("hello devices  [delivered 2/2, read 1/2]"), "\(history)")

        let (infoStatus, info) = try await CLI.run(CLI.binary, home: home, ["info", String(uid.prefix(8))])
        #expect(infoStatus == 0, "\(info)")
        let lines = info.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("message \(uid) to \(bob)") == true, "\(info)")
        #expect(lines.contains { $0.hasPrefix("  \(bob): read, sent ") }, "\(info)")
        let phoneLine = try #require(lines.first { $0.hasPrefix("    device \(phone.account.deviceId): ") }, "\(info)")
        #expect(phoneLine.contains("sent ") && phoneLine.contains("delivered ") && phoneLine.contains("read "), "\(phoneLine)")
        let laptopLine = try #require(lines.first { $0.hasPrefix("    device \(laptop.account.deviceId): ") }, "\(info)")
        #expect(laptopLine.contains("delivered ") && !laptopLine.contains("read "), "\(laptopLine)")

        let (json, jsonOutput) = try await CLI.run(CLI.binary, home: home, ["info", uid, "--json"])
        #expect(json == 0)
        #expect(jsonOutput.contains("\"event\":\"receipt\"") && jsonOutput.contains("\"readAt\":"), "\(jsonOutput)")
        let (missing, missingOutput) = try await CLI.run(CLI.binary, home: home, ["info", "ffffffff"])
        #expect(missing == 1)
        #expect(missingOutput == "parley: no message with id ffffffff\n", "\(missingOutput)")
        await phone.close(); await laptop.close()
        await harness.finish()
    }

    @Test func aGroupOfFiveShowsReadByThreeOfFive() async throws {
        let harness = try await EngineHarness()
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let home = harness.dir.appendingPathComponent("alice-home").path
        #expect(try await CLI.run(CLI.binary, home: home, ["register", "alice\(suffix)", "--server", harness.baseURL]).0 == 0)
        var members: [ParleyDevice] = []
        for i in 0..<5 { members.append(try await harness.register("m\(i)")) }
        let (created, createOutput) = try await CLI.run(CLI.binary, home: home, ["group", "create", "five"] + members.map(\.account.name))
        #expect(created == 0, "\(createOutput)")
        for member in members { _ = await member.syncOnce(timeout: .seconds(60)) }

        let (sent, sendOutput) = try await CLI.run(CLI.binary, home: home, ["send", "--group", "five", "hello", "five"])
        #expect(sent == 0, "\(sendOutput)")
        let uid = try Self.sentId(sendOutput)
        for member in members { _ = await member.syncOnce(timeout: .seconds(60)) }
        for member in members.prefix(3) {
            let groupId = try #require(try member.store.conversations().compactMap { conversation -> String? in
                if case .group(let id) = conversation.kind { return id }
                return nil
            }.first)
            #expect(try await member.markRead(try member.store.groupConversation(groupId: groupId).id) >= 1)
        }
        #expect(try await CLI.run(CLI.binary, home: home, ["sync"]).0 == 0)

        let (_, history) = try await CLI.run(CLI.binary, home: home, ["history", "--group", "five"])
        #expect(history.contains("hello five  [delivered to 5 of 5, read by 3 of 5]"), "\(history)")
        let (_, info) = try await CLI.run(CLI.binary, home: home, ["info", uid])
        for (index, member) in members.enumerated() {
            #expect(info.contains("  \(member.account.name): \(index < 3 ? "read" : "delivered")"), "\(info)")
        }
        #expect(info.components(separatedBy: "    device 1: ").count - 1 == 5, "\(info)")
        for member in members { await member.close() }
        await harness.finish()
    }
}
