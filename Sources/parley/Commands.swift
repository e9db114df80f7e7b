import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: account

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an account with this device as its first device (or recover one with --recover).",
        discussion: """
            Registration prints the account's recovery code once: keep it somewhere safe. If every device of the
            account is lost, `parley register NAME --recover` on a new device takes the name back with it: the old
            devices stop working, their queued messages are dropped, the account gets a new identity key (contacts
            see a safety-number change) and a new recovery code. The code is read from a no-echo prompt on a
            terminal, else from --recovery-code-file or PARLEY_RECOVERY_CODE.
            """)
    @OptionGroup var options: GlobalOptions
    @Argument(help: ArgumentHelp("Account name: \(AccountNameRule.summary); unique on the relay.")) var name: String
    @Option(help: "A name for this device, shown in device lists.") var deviceName: String?
    @Flag(help: "Recover an existing account whose devices are all lost, with its recovery code.") var recover = false
    @Option(help: "With --recover: read the recovery code from this file (for scripts).") var recoveryCodeFile: String?
    @Flag(help: "Create a store that is NOT encrypted at rest (no passphrase). Without it the store is sealed.") var noPassphrase = false

    func run() async throws {
        try await guarded {
            let server = try options.serverURL(for: "register")
            if let violation = AccountNameRule.violation(in: name) {
                throw CLIError("\"\(name)\" cannot be an account name: \(violation) (\(AccountNameRule.summary))")
            }
            guard !FileManager.default.fileExists(atPath: options.storePath) else {
                throw CLIError("\(options.homePath) already holds a device; use another --home")
            }
            let passphrase = try StoreAccess.passphraseForNewStore(options: options, noPassphrase: noPassphrase, command: "register")
            try options.ensureHome()
            let device: ParleyDevice
            if recover {
                let code = try RecoveryCodeInput.read(file: recoveryCodeFile)
                device = try await CLIError.wrap {
                    try await ParleyDevice.recover(
                        name: name, recoveryCode: code, serverURL: server, storePath: options.storePath, passphrase: passphrase,
                        deviceName: deviceName, http: GlobalOptions.http, rateLimit: GlobalOptions.rateLimit)
                }
            } else {
                do {
                    device = try await ParleyDevice.register(
                        name: name, serverURL: server, storePath: options.storePath, passphrase: passphrase, deviceName: deviceName,
                        http: GlobalOptions.http, rateLimit: GlobalOptions.rateLimit)
                } catch RelayClientError.rejected(_, .nameTaken?, _) {
                    throw CLIError(
                        "the name \(name) is taken at \(server); if it is yours and every device of it is lost, recover it with "
                            + "`parley register \(name) --recover` and its recovery code")
                } catch {
                    throw CLIError(CLIError.describe(error))
                }
            }
            let verb = recover ? "recovered" : "registered"
            options.output.emit(
                "\(verb) \(device.account.name), device \(device.account.deviceId), at \(server)"
                    + (recover ? " (the old devices are removed; contacts will see a new safety number)" : ""),
                [
                    "event": .string(verb), "account": .string(device.account.name), "device": .int(Int64(device.account.deviceId)),
                    "recoveryCode": device.recoveryCode.map(JSONValue.string) ?? .null,
                ])
            if let code = device.recoveryCode, !options.json {
                options.output.emit(
                    "recovery code (shown only now; keep it safe: it recovers \(device.account.name) if every device is lost):\n  \(code)", [:])
            }
            await device.close()
        }
    }
}

/// Where `register --recover` gets the recovery code: a no-echo prompt on a terminal; else the file named by
/// `--recovery-code-file`, else `PARLEY_RECOVERY_CODE`.
enum RecoveryCodeInput {
    static func read(file: String?) throws -> String {
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read the recovery code file \(file)") }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if isatty(STDIN_FILENO) != 0 {
            return try prompt("recovery code: ")
        }
        if let code = ProcessInfo.processInfo.environment["PARLEY_RECOVERY_CODE"], !code.isEmpty { return code }
        throw CLIError("--recover needs the recovery code: type it at the prompt on a terminal, or give --recovery-code-file or PARLEY_RECOVERY_CODE")
    }

    /// Reads one line from the terminal with echo off (restored afterwards, also on failure).
    static func prompt(_ text: String) throws -> String {
        FileHandle.standardError.write(Data(text.utf8))
        var saved = termios()
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { throw CLIError("cannot read the terminal's settings") }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0 else { throw CLIError("cannot turn the terminal's echo off") }
        defer {
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        guard let line = readLine(strippingNewline: true) else { throw CLIError("no recovery code given") }
        return line.trimmingCharacters(in: .whitespaces)
    }
}

struct Whoami: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show this device's account, device id and relay.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let account = device.account
            let sealed = device.store.isSealed
            options.output.emit(
                "\(account.name) (device \(account.deviceId)) at \(account.serverURL)"
                    + (sealed ? "" : " (store not sealed: not encrypted at rest)"),
                [
                    "account": .string(account.name), "device": .int(Int64(account.deviceId)), "server": .string(account.serverURL),
                    "sealed": .bool(sealed),
                ])
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
    @Argument(help: ArgumentHelp(
        "Recipient account (omit with --group), then the text (after `--` if it starts with a dash); `-` instead of the text reads it from standard input. At most \(ParleyDevice.maxMessageTextBytes / 1024) KiB of UTF-8."))
    var words: [String] = []

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
            let addressed: () -> [String]
            if let group = target.group {
                guard !words.isEmpty else { throw CLIError("nothing to send") }
                let id = try device.resolveGroup(group)
                let text = try Self.text(of: words)
                uid = try await CLIError.wrap { try await device.sendGroup(text, to: id) }
                label = Output.name(of: try device.store.groupConversation(groupId: id))
                addressed = { IdentityWarnings.accounts(device, peer: nil, groupId: id) }
            } else {
                guard words.count >= 2 else { throw CLIError("usage: parley send ACCOUNT TEXT... (or --group GROUP TEXT..., or - to read standard input)") }
                let peer = words.removeFirst()
                if peer != device.account.name, let violation = AccountNameRule.violation(in: peer) {
                    throw CLIError("\"\(peer)\" is not an account name: \(violation) (\(AccountNameRule.summary))")
                }
                let text = try Self.text(of: words)
                uid = try await CLIError.wrap { try await device.send(text, to: peer) }
                label = peer
                addressed = { [peer] }
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
            // After the send: a change the send itself met (a new key in a bundle) is included.
            IdentityWarnings.warn(device, about: addressed())
            await device.close()
            for reason in await failures.value { Console.error("parley: \(reason)") }
            if statuses.values.contains(.failed) { throw ExitCode.failure }
        }
    }
}

extension Send {
    /// The message text: the words joined by spaces, or standard input for a lone `-` (one trailing newline
    /// dropped). Standard input is read up to one byte over the limit, so a huge input is refused without
    /// being read whole.
    static func text(of words: [String]) throws -> String {
        guard words == ["-"] else { return words.joined(separator: " ") }
        let limit = ParleyDevice.maxMessageTextBytes
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count <= limit {
            let count = chunk.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(0, base, raw.count)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.last == 0x0D { bytes.removeLast() }
        guard bytes.count <= limit else {
            throw CLIError("the message on standard input is longer than the limit of \(limit) bytes (\(limit / 1024) KiB) of UTF-8 text")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw CLIError("standard input is not UTF-8 text") }
        return text
    }

    /// What `send` says about a message left in the outbox, by why the outbox stopped.
    static func queued(_ deferral: SendDeferral?) -> String {
        switch deferral {
        case .rateLimited(let seconds)?: return "queued (rate limited by the relay; retry in \(seconds) s; sent later)"
        case .relayBusy(let reason)?: return "queued (\(reason); sent later)"
        case .relayUnreachable?, nil: return "queued (relay unreachable; sent later)"
        }
    }
}

/// Why a relay could not be reached, for one error line: asks `GET /healthz` (the WebSocket's own failure is
/// not typed); nil when the relay answers.
func unreachableReason(_ device: ParleyDevice) async -> String? {
    await device.probeRelay().map { CLIError.unreachable($0) }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect once: receive what is queued, send the outbox, print what happened, and exit.",
        discussion: """
            Exits after the outbox (the receipts for what was received included) has been sent. Exit status: 0 when \
            everything was received and sent; 75 (EX_TEMPFAIL) when everything was received but outbox entries \
            stay queued (the reason is printed on standard error; the next command that reaches the relay sends \
            them); 1 on any error, a relay that cannot be reached included.
            """)
    @OptionGroup var options: GlobalOptions
    @Option(help: "Give up after this many seconds.") var timeout = 30

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let printer = EventPrinter(device: device, output: options.output)
            let events = await device.events()
            let consumer = Task { for await event in events { printer.print(event) } }
            // Returns after the backlog was processed and the outbox (the receipts it queued included) was
            // flushed, or stopped for a reason (`deferral`).
            let drained = await device.syncOnce(timeout: .seconds(timeout))
            let queued = (try? device.store.outboxCount()) ?? 0
            let deferral = await device.deferral
            var unreachable: String? = nil
            if !drained { unreachable = await unreachableReason(device) }
            await device.close()
            await consumer.value
            if await device.removedFromAccount { throw CLIError(ClientError.deviceRemoved.description) }
            let left = queued == 0 ? "" : "; \(queued) outbox \(queued == 1 ? "entry stays" : "entries stay") queued"
            if !drained {
                throw CLIError(
                    (unreachable ?? "the relay at \(device.account.serverURL) did not finish sending the backlog within \(timeout) s") + left)
            }
            if queued > 0 {
                let why: String
                switch deferral {
                case .relayUnreachable(let reason)?: why = CLIError.unreachable(reason)
                case .rateLimited(let seconds)?: why = "rate limited by the relay; retry in \(seconds) s"
                case .relayBusy(let reason)?: why = "the relay could not take them now (\(reason))"
                case nil: why = "the sync ended (\(timeout) s) before they were sent"
                }
                Console.error(
                    "parley: \(queued) outbox \(queued == 1 ? "entry" : "entries") left queued: \(why); the next command that reaches the relay sends them")
                throw ExitCode(Parley.exitQueued)
            }
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
            let group = target.group != nil
            for message in page.messages.reversed() {
                let receipts = message.outgoing && !message.notice ? try device.store.receiptSummary(of: message.id, group: group) : nil
                options.output.message(message, conversation: label, me: device.account.name, receipts: receipts)
            }
            let groupId = try target.group.map { try device.resolveGroup($0) }
            IdentityWarnings.warn(device, about: IdentityWarnings.accounts(device, peer: peer, groupId: groupId))
            await device.close()
        }
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what happened to a message: per recipient (each member of a group) and device, when it was sent, delivered and read.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "The message id (as `send` and `history --json` print it), or a unique prefix of it (at least 4 characters).")
    var id: String

    /// The shortest id prefix `info` looks up (shorter ones match too much to be useful).
    static let minimumPrefix = 4

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            guard id.count >= Self.minimumPrefix else { throw CLIError("give at least \(Self.minimumPrefix) characters of the message id") }
            let matches = try device.store.messages(uidPrefix: id, limit: 2)
            guard let found = matches.first else { throw CLIError("no message with id \(id)") }
            guard matches.count == 1 else { throw CLIError("\(id) matches several messages; give more of the id") }
            guard let message = try device.store.message(id: found) else { throw CLIError("no message with id \(id)") }
            let conversation = try device.store.conversation(id: message.conversation)
            let label = conversation.map(Output.name(of:)) ?? "?"
            let uid = message.messageUid ?? id
            guard message.outgoing else {
                options.output.emit(
                    "message \(uid) from \(message.sender.name) (device \(message.sender.deviceId)) in \(label), sent \(Output.time(message.sentAt)) UTC, received \(Output.time(message.receivedAt)) UTC",
                    [
                        "event": "info", "id": .string(uid), "from": .string(message.sender.name), "device": .int(Int64(message.sender.deviceId)),
                        "conversation": .string(label), "sentAt": message.sentAt.map(JSONValue.int) ?? .null,
                        "receivedAt": message.receivedAt.map(JSONValue.int) ?? .null,
                    ])
                await device.close()
                return
            }
            options.output.emit(
                "message \(uid) to \(label), written \(Output.time(message.sentAt)) UTC",
                ["event": "info", "id": .string(uid), "conversation": .string(label), "sentAt": message.sentAt.map(JSONValue.int) ?? .null])
            func time(_ millis: Int64?) -> JSONValue { millis.map(JSONValue.int) ?? .null }
            for recipient in try device.store.receipts(of: found) {
                options.output.emit(
                    "  \(recipient.account): \(recipient.status.rawValue)\(recipient.sentAt.map { ", sent \(Output.time($0)) UTC" } ?? "")",
                    [
                        "event": "receipt", "id": .string(uid), "recipient": .string(recipient.account), "status": .string(recipient.status.rawValue),
                        "sentAt": time(recipient.sentAt),
                        "devices": .array(recipient.devices.map { entry -> JSONValue in
                            .object([
                                "device": .int(Int64(entry.deviceId)), "sentAt": time(entry.sentAt), "deliveredAt": time(entry.deliveredAt),
                                "readAt": time(entry.readAt),
                            ])
                        }),
                    ])
                guard !options.output.json else { continue }
                for receipt in recipient.devices {
                    var parts: [String] = []
                    if let at = receipt.sentAt { parts.append("sent \(Output.time(at))") }
                    parts.append(receipt.deliveredAt.map { "delivered \(Output.time($0))" } ?? "not delivered yet")
                    if let at = receipt.readAt { parts.append("read \(Output.time(at))") }
                    options.output.emit("    device \(receipt.deviceId): " + parts.joined(separator: ", "), [:])
                }
            }
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
            let groupId = try target.group.map { try device.resolveGroup($0) }
            IdentityWarnings.warn(device, about: IdentityWarnings.accounts(device, peer: peer, groupId: groupId))
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
            let collector = Task { () -> (connected: Bool, seen: [String: (Bool, Int64?)]) in
                var seen: [String: (Bool, Int64?)] = [:]
                var connected = false
                for await event in events {
                    if case .connected = event { connected = true }
                    if case .presence(let account, let online, let lastSeen) = event {
                        seen[account] = (online, lastSeen)
                        if Set(seen.keys).isSuperset(of: wanted) { break }
                    }
                }
                return (connected, seen)
            }
            let timer = Task {
                try? await Task.sleep(for: .seconds(wait))
                collector.cancel()
            }
            let (connected, seen) = await collector.value
            timer.cancel()
            loop.cancel()
            IdentityWarnings.warn(device, about: wanted)
            var unreachable: String? = nil
            if !connected { unreachable = await unreachableReason(device) }
            await device.close()
            guard connected else {
                throw CLIError(unreachable ?? "the relay at \(device.account.serverURL) did not accept a connection within \(wait) s")
            }
            var unanswered: [String] = []
            for account in wanted {
                guard let (online, lastSeen) = seen[account] else {
                    unanswered.append(account)
                    continue
                }
                let when = lastSeen.map { "last seen \(Output.time($0)) UTC" } ?? "never seen"
                options.output.emit(
                    "\(account): \(online ? "online" : "offline, \(when)")",
                    ["account": .string(account), "online": .bool(online), "lastSeen": lastSeen.map(JSONValue.int) ?? .null])
            }
            if !unanswered.isEmpty {
                throw CLIError("the relay did not say within \(wait) s whether \(unanswered.joined(separator: ", ")) \(unanswered.count == 1 ? "is" : "are") online")
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
            // Seen: an accepted change stops warning; a refused one (verified contact) warns until `trust`.
            try device.acknowledgeSafetyNumber(with: peer)
            IdentityWarnings.warn(device, about: [peer])
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
    @Option(help: "Seconds to wait for the connection to the relay.") var wait = 5

    func run() async throws {
        try await guarded {
            let device = try options.openDevice()
            let events = await device.events()
            let loop = Task { await device.run() }
            // The relay must be reached within `wait` seconds: `run` retries for ever, a command must not.
            let waiter = Task { () -> Bool in
                for await event in events { if case .connected = event { return true } }
                return false
            }
            let timer = Task {
                try? await Task.sleep(for: .seconds(wait))
                waiter.cancel()
            }
            let connected = await waiter.value
            timer.cancel()
            guard connected else {
                loop.cancel()
                let unreachable = await unreachableReason(device)
                await device.close()
                throw CLIError(unreachable ?? "the relay at \(device.account.serverURL) did not accept a connection within \(wait) s")
            }
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
