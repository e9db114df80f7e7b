import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol

/// Prints engine events as lines (or JSON objects).
struct EventPrinter: Sendable {
    let device: ParleyDevice
    let output: Output
    /// Only events of this conversation (messages), if set.
    var only: ConversationID? = nil

    func print(_ event: ClientEvent) {
        switch event {
        case .message(let message):
            if let only, message.conversation != only { return }
            let label = (try? device.store.conversation(id: message.conversation)).flatMap { $0 }.map(Output.name(of:)) ?? "?"
            output.message(message, conversation: label, me: device.account.name)
        case .status(let uid, let recipient, let status):
            output.emit(
                "  \(status.rawValue) by \(recipient): message \(uid.prefix(8))",
                ["event": "status", "id": .string(uid), "recipient": .string(recipient), "status": .string(status.rawValue)])
        case .undecryptable(let sender, let reason):
            output.emit(
                "  could not decrypt a message from \(sender) (\(reason)); the session is being repaired",
                ["event": "undecryptable", "from": .string(sender.name), "device": .int(Int64(sender.deviceId)), "reason": .string(reason)])
        case .presence(let account, let online, let lastSeen):
            output.emit(
                "  \(account) is \(online ? "online" : "offline")",
                ["event": "presence", "account": .string(account), "online": .bool(online), "lastSeen": lastSeen.map(JSONValue.int) ?? .null])
        case .typing(let account, _, let groupId, let started):
            output.emit(
                "  \(account) \(started ? "is typing" : "stopped typing")\(groupId.map { " in \($0.prefix(8))" } ?? "")",
                ["event": "typing", "account": .string(account), "started": .bool(started), "group": groupId.map(JSONValue.string) ?? .null])
        case .identityChanged(let account, let accepted):
            output.emit(
                "  WARNING: the safety number with \(account) changed\(accepted ? "" : "; \(account) was verified, so nothing is sent until you run `parley trust \(account)`")",
                ["event": "identityChanged", "account": .string(account), "accepted": .bool(accepted)])
        case .groupChanged(let groupId):
            // The change itself is printed once, as its notice (a `.message`).
            if output.json { output.emit("", ["event": "groupChanged", "group": .string(groupId)]) }
        case .removed(let id):
            if output.json { output.emit("", ["event": "removed", "message": .int(id.rawValue)]) }
        case .connected:
            if output.json { output.emit("", ["event": "connected"]) }
        case .backlogDrained:
            if output.json { output.emit("", ["event": "backlogDrained"]) }
        case .disconnected(let reason):
            if output.json { output.emit("", ["event": "disconnected", "reason": .string(reason)]) }
        case .sendFailed(let destination, let reason):
            output.emit("  could not send to \(destination): \(reason)", ["event": "sendFailed", "to": .string(destination), "reason": .string(reason)])
        }
    }
}

/// Reads standard input lines on a thread of its own (readLine blocks).
func standardInputLines() -> AsyncStream<String> {
    AsyncStream { continuation in
        let thread = Thread {
            while let line = readLine(strippingNewline: true) { continuation.yield(line) }
            continuation.finish()
        }
        thread.start()
    }
}

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive chat in a plain terminal: type a line to send it; /read, /history and /quit.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var target: Target
    @Argument(help: "The other account (omit with --group).") var peer: String?

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let groupId = try target.group.map { try device.resolveGroup($0) }
            let (conversation, label) = try device.conversationId(peer: peer, group: groupId)
            let printer = EventPrinter(device: device, output: options.output, only: conversation)
            let events = await device.events()
            options.output.emit("chat with \(label): type a message and press Enter; /quit to leave", ["event": "chat", "with": .string(label)])
            for message in try device.store.messages(in: conversation, limit: 10).messages.reversed() {
                options.output.message(message, conversation: label, me: device.account.name)
            }
            IdentityWarnings.warn(device, about: IdentityWarnings.accounts(device, peer: peer, groupId: groupId))
            let loop = Task { await device.run() }
            let consumer = Task { for await event in events { printer.print(event) } }
            for await line in standardInputLines() {
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                switch text {
                case "/quit", "/exit":
                    break
                case "/read":
                    _ = try? await device.markRead(conversation)
                    continue
                case "/history":
                    for message in try device.store.messages(in: conversation, limit: 20).messages.reversed() {
                        options.output.message(message, conversation: label, me: device.account.name)
                    }
                    continue
                default:
                    do {
                        let uid: String
                        if let groupId { uid = try await device.sendGroup(text, to: groupId) } else { uid = try await device.send(text, to: peer ?? "") }
                        if let id = try device.store.message(uid: uid, sender: device.account.name), let message = try device.store.message(id: id) {
                            options.output.message(message, conversation: label, me: device.account.name)
                        }
                        _ = try? await device.markRead(conversation)
                    } catch {
                        Console.error("parley: \(CLIError.describe(error))")
                    }
                    continue
                }
                break
            }
            loop.cancel()
            consumer.cancel()
            await device.close()
        }
    }
}
