import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyWire

// MARK: account

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create an account with this device as its first device.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Account name (letters, digits, '-', '_', '.'; unique on the relay).") var name: String
    @Option(help: "A name for this device, shown in device lists.") var deviceName: String?

    func run() async throws {
        try await guarded {
            guard let server = options.server else { throw CLIError("register needs --server URL") }
            try options.ensureHome()
            guard !FileManager.default.fileExists(atPath: options.storePath) else {
                throw CLIError("\(options.homePath) already holds a device; use another --home")
            }
            let device = try await CLIError.wrap {
                try await ParleyDevice.register(
                    name: name, serverURL: server, storePath: options.storePath, passphrase: options.passphrase, deviceName: deviceName,
                    rateLimit: GlobalOptions.rateLimit)
            }
            options.output.emit(
                "registered \(device.account.name), device \(device.account.deviceId), at \(server)",
                ["event": "registered", "account": .string(device.account.name), "device": .int(Int64(device.account.deviceId))])
            await device.close()
        }
    }
}

struct Whoami: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show this device's account, device id and relay.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let account = device.account
            options.output.emit(
                "\(account.name) (device \(account.deviceId)) at \(account.serverURL)",
                ["account": .string(account.name), "device": .int(Int64(account.deviceId)), "server": .string(account.serverURL)])
            await device.close()
        }
    }
}

// MARK: messaging

/// Whom a command addresses: an account, or a group (`--group` id, id prefix or title).
struct Target: ParsableArguments {
    @Option(name: .customLong("group"), help: "A group: its id, an id prefix, or its title.") var group: String?
}

extension ParleyDevice {
    /// Resolves a group reference (id, unique id prefix, or unique title).
    nonisolated func resolveGroup(_ reference: String) throws -> String {
        let groups = try store.conversations().compactMap { conversation -> (String, String?)? in
            guard case .group(let id) = conversation.kind else { return nil }
            return (id, conversation.title)
        }
        let lowered = reference.lowercased()
        if let exact = groups.first(where: { $0.0 == lowered }) { return exact.0 }
        let matches = groups.filter { $0.0.hasPrefix(lowered) || $0.1 == reference }
        guard matches.count == 1 else {
            throw CLIError(matches.isEmpty ? "no group matches \(reference)" : "\(reference) matches several groups; use the id")
        }
        return matches[0].0
    }

    nonisolated func conversationId(peer: String?, group: String?) throws -> (ConversationID, String) {
        if let group {
            let id = try resolveGroup(group)
            let conversation = try store.groupConversation(groupId: id)
            return (conversation.id, Output.name(of: conversation))
        }
        guard let peer else { throw CLIError("name an account, or --group") }
        return (try store.directConversation(with: peer).id, peer)
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a message to every device of an account (or to a group).",
        discussion: "The message waits in this device's outbox until the relay acknowledges it; an unsent message goes with the next command that reaches the relay.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var target: Target
    @Argument(help: "Recipient account (omit with --group), then the text (after `--` if it starts with a dash).") var words: [String] = []

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let events = await device.events()
            let failures = Task { () -> [String] in
                var reasons: [String] = []
                for await event in events { if case .sendFailed(let to, let reason) = event { reasons.append("could not send to \(to): \(reason)") } }
                return reasons
            }
            var words = self.words
            let uid: String
            let label: String
            if let group = target.group {
                guard !words.isEmpty else { throw CLIError("nothing to send") }
                let id = try device.resolveGroup(group)
                uid = try await CLIError.wrap { try await device.sendGroup(words.joined(separator: " "), to: id) }
                label = Output.name(of: try device.store.groupConversation(groupId: id))
            } else {
                guard words.count >= 2 else { throw CLIError("usage: parley send ACCOUNT TEXT... (or --group GROUP TEXT...)") }
                let peer = words.removeFirst()
                uid = try await CLIError.wrap { try await device.send(words.joined(separator: " "), to: peer) }
                label = peer
            }
            if await device.removedFromAccount {
                await device.close()
                throw CLIError(ClientError.deviceRemoved.description)
            }
            let id = try device.store.message(uid: uid, sender: device.account.name)
            let statuses = try id.flatMap { try device.store.message(id: $0) }?.statuses ?? [:]
            let pending = try device.store.outboxCount()
            let state = statuses.values.contains(.failed) ? "failed" : pending > 0 ? Self.queued(await device.deferral) : "sent"
            options.output.emit(
                "\(state): message \(uid) to \(label)",
                ["event": "sent", "id": .string(uid), "to": .string(label), "state": .string(state), "outbox": .int(Int64(pending))])
            await device.close()
            for reason in await failures.value { FileHandle.standardError.write(Data("parley: \(reason)\n".utf8)) }
            if statuses.values.contains(.failed) { throw ExitCode.failure }
        }
    }
}

extension Send {
    /// What `send` says about a message left in the outbox, by why the outbox stopped.
    static func queued(_ deferral: SendDeferral?) -> String {
        switch deferral {
        case .rateLimited(let seconds)?: return "queued (rate limited by the relay; retry in \(seconds) s; sent later)"
        case .relayBusy(let reason)?: return "queued (\(reason); sent later)"
        case .relayUnreachable?, nil: return "queued (relay unreachable; sent later)"
        }
    }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect once: receive what is queued, send the outbox, print what happened, and exit.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "Give up after this many seconds.") var timeout = 30

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let printer = EventPrinter(device: device, output: options.output)
            let events = await device.events()
            let consumer = Task { for await event in events { printer.print(event) } }
            let drained = await device.syncOnce(timeout: .seconds(timeout))
            await device.close()
            await consumer.value
            if await device.removedFromAccount { throw CLIError(ClientError.deviceRemoved.description) }
            if !drained { throw CLIError("could not reach the relay at \(device.account.serverURL)") }
        }
    }
}

struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stay connected and print messages, receipts, presence and typing as they come (Ctrl-C stops).")
    @OptionGroup var options: GlobalOptions
    @Option(name: .customLong("for"), help: "Stop after this many seconds.") var seconds: Int?
    @Option(help: "Stop after this many messages.") var count: Int?

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let printer = EventPrinter(device: device, output: options.output)
            let events = await device.events()
            let limit = count
            let consumer = Task {
                var messages = 0
                for await event in events {
                    printer.print(event)
                    if case .message = event { messages += 1 }
                    if let limit, messages >= limit { return }
                }
            }
            let loop = Task {
                await device.run()
                // `run` returns by itself only for a device removed from its account.
                if await device.removedFromAccount { consumer.cancel() }
            }
            if let seconds {
                let timer = Task {
                    try? await Task.sleep(for: .seconds(seconds))
                    consumer.cancel()
                }
                await consumer.value
                timer.cancel()
            } else {
                await consumer.value
            }
            loop.cancel()
            let removed = await device.removedFromAccount
            await device.close()
            if removed { throw CLIError(ClientError.deviceRemoved.description) }
        }
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a conversation's history, oldest first.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var target: Target
    @Argument(help: "The other account (omit with --group).") var peer: String?
    @Option(help: "How many of the newest messages.") var limit = 50

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let (conversation, label) = try device.conversationId(peer: peer, group: target.group)
            let page = try device.store.messages(in: conversation, limit: max(1, min(limit, DeviceStore.maxPageSize)))
            for message in page.messages.reversed() { options.output.message(message, conversation: label, me: device.account.name) }
            await device.close()
        }
    }
}

struct Search: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Full-text search over this device's history.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Words to find (prefixes match).") var words: [String]
    @Option(help: "At most this many results.") var limit = 20

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let found = try device.store.searchMessages(words.joined(separator: " "), limit: max(1, min(limit, DeviceStore.maxPageSize)))
            for message in found {
                let label = try device.store.conversation(id: message.conversation).map(Output.name(of:)) ?? "?"
                options.output.message(message, conversation: label, me: device.account.name)
            }
            await device.close()
        }
    }
}

struct Read: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mark a conversation read and send read receipts.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var target: Target
    @Argument(help: "The other account (omit with --group).") var peer: String?

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let (conversation, label) = try device.conversationId(peer: peer, group: target.group)
            let count = try await CLIError.wrap { try await device.markRead(conversation) }
            options.output.emit("\(count) message(s) from \(label) marked read", ["event": "read", "conversation": .string(label), "count": .int(Int64(count))])
            await device.close()
        }
    }
}

// MARK: presence and identity

struct Presence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show whether accounts are online, and when they were last seen.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "Accounts (default: all contacts).") var accounts: [String] = []
    @Option(help: "Seconds to wait for the relay's answer.") var wait = 5

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let wanted = accounts.isEmpty ? try device.store.contacts().map(\.account).filter { $0 != device.account.name } : accounts
            guard !wanted.isEmpty else { throw CLIError("no contacts yet: name the accounts") }
            let events = await device.events()
            try await device.watchPresence(wanted)
            let loop = Task { await device.run() }
            let collector = Task { () -> [String: (Bool, Int64?)] in
                var seen: [String: (Bool, Int64?)] = [:]
                for await event in events {
                    if case .presence(let account, let online, let lastSeen) = event {
                        seen[account] = (online, lastSeen)
                        if Set(seen.keys).isSuperset(of: wanted) { break }
                    }
                }
                return seen
            }
            let timer = Task {
                try? await Task.sleep(for: .seconds(wait))
                collector.cancel()
            }
            let seen = await collector.value
            timer.cancel()
            loop.cancel()
            await device.close()
            for account in wanted {
                guard let (online, lastSeen) = seen[account] else {
                    options.output.emit("\(account): unknown", ["account": .string(account), "online": .null])
                    continue
                }
                let when = lastSeen.map { "last seen \(Output.time($0)) UTC" } ?? "never seen"
                options.output.emit(
                    "\(account): \(online ? "online" : "offline, \(when)")",
                    ["account": .string(account), "online": .bool(online), "lastSeen": lastSeen.map(JSONValue.int) ?? .null])
            }
        }
    }
}

struct SafetyNumberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safety-number", abstract: "Show the safety number to compare with a contact out of band.")
    @OptionGroup var options: GlobalOptions
    @Argument var peer: String

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let number = try CLIError.wrap { try device.safetyNumber(with: peer) }
            let digits = Array(number.displayString)
            let groups = stride(from: 0, to: digits.count, by: 5).map { String(digits[$0..<min($0 + 5, digits.count)]) }
            let verified = try device.isVerified(peer)
            options.output.emit(
                "safety number with \(peer)\(verified ? " (verified)" : ""):\n  " + groups.prefix(6).joined(separator: " ") + "\n  "
                    + groups.dropFirst(6).joined(separator: " "),
                ["peer": .string(peer), "safetyNumber": .string(number.displayString), "verified": .bool(verified)])
            await device.close()
        }
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mark a contact verified (after comparing safety numbers): a later key change is refused until trusted again.")
    @OptionGroup var options: GlobalOptions
    @Argument var peer: String

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            try CLIError.wrap { try device.verify(peer) }
            options.output.emit("\(peer) verified", ["peer": .string(peer), "verified": true])
            await device.close()
        }
    }
}

struct Trust: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept a contact's new identity key (then compare and verify again).")
    @OptionGroup var options: GlobalOptions
    @Argument var peer: String

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            try await CLIError.wrap { try await device.trustNewIdentity(of: peer) }
            options.output.emit("the new key of \(peer) is accepted (unverified)", ["peer": .string(peer), "verified": false])
            await device.close()
        }
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    init(booleanLiteral value: Bool) { self = .bool(value) }
}

struct Typing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a typing indicator to an account's connected devices (or a group's): ephemeral, never queued.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var target: Target
    @Argument(help: "The other account (omit with --group).") var peer: String?
    @Flag(help: "Say that typing stopped.") var stop = false

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let events = await device.events()
            let loop = Task { await device.run() }
            for await event in events { if case .connected = event { break } }
            if let group = target.group {
                try await device.setTyping(!stop, inGroup: try device.resolveGroup(group))
            } else {
                guard let peer else { throw CLIError("name an account, or --group") }
                try await device.setTyping(!stop, to: peer)
            }
            try? await Task.sleep(for: .milliseconds(300))  // let the frame go out
            loop.cancel()
            await device.close()
            options.output.emit("typing \(stop ? "stopped" : "started")", ["event": "typing", "started": .bool(!stop)])
        }
    }
}
