import ArgumentParser
import Foundation
import ParleyClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a store passphrase comes from, in this order: `--passphrase-file PATH` or `PARLEY_PASSPHRASE_FILE`
/// (the file's first line), `PARLEY_PASSPHRASE` (for scripts: the environment of a process is readable by
/// the same user's processes), a no-echo prompt when standard input is a terminal (asked twice when a
/// store is created). None of them: nil.
enum PassphraseInput {
    /// The environment variables, named once.
    static let fileVariable = "PARLEY_PASSPHRASE_FILE"
    static let variable = "PARLEY_PASSPHRASE"
    static let newFileVariable = "PARLEY_NEW_PASSPHRASE_FILE"
    static let newVariable = "PARLEY_NEW_PASSPHRASE"

    /// The current passphrase (`confirm`: ask twice at a prompt, for a new store).
    static func read(file: String?, confirm: Bool, label: String = "store passphrase") throws -> Passphrase? {
        try read(file: file, fileVariable: fileVariable, variable: variable, confirm: confirm, label: label)
    }

    /// A new passphrase for `passphrase change`: `--new-passphrase-file`, `PARLEY_NEW_PASSPHRASE_FILE`,
    /// `PARLEY_NEW_PASSPHRASE`, else a prompt asked twice.
    static func readNew(file: String?) throws -> Passphrase? {
        try read(file: file, fileVariable: newFileVariable, variable: newVariable, confirm: true, label: "new store passphrase")
    }

    private static func read(file: String?, fileVariable: String, variable: String, confirm: Bool, label: String) throws -> Passphrase? {
        let environment = ProcessInfo.processInfo.environment
        if let path = file ?? environment[fileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            return try firstLine(of: path)
        }
        if let text = environment[variable], !text.isEmpty { return Passphrase(text) }
        guard isatty(STDIN_FILENO) != 0 else { return nil }
        var first = try TerminalPrompt.secret("\(label): ")
        guard !first.isEmpty else { throw CLIError("an empty passphrase protects nothing") }
        if confirm {
            var second = try TerminalPrompt.secret("\(label) again: ")
            defer { for i in second.indices { second[i] = 0 } }
            guard first == second else {
                for i in first.indices { first[i] = 0 }
                throw CLIError("the two passphrases differ; nothing was changed")
            }
        }
        return Passphrase(wiping: &first)
    }

    /// The first line of `path` (without its line ending), which must not be empty.
    static func firstLine(of path: String) throws -> Passphrase {
        guard var data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read the passphrase file \(path)") }
        defer { data.resetBytes(in: 0..<data.count) }
        let end = data.firstIndex(where: { $0 == 0x0a || $0 == 0x0d }) ?? data.endIndex
        guard end > data.startIndex else { throw CLIError("the passphrase file \(path) starts with an empty line") }
        var line = Array(data[data.startIndex..<end])
        return Passphrase(wiping: &line)
    }
}

/// A no-echo read from the terminal on standard input. Echo is restored on every exit: normal return,
/// error, and SIGINT/SIGTERM/SIGHUP while the prompt waits (a handler restores the saved settings, then
/// the signal's default action runs).
enum TerminalPrompt {
    nonisolated(unsafe) private static var saved = termios()
    private static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    static func secret(_ text: String) throws -> [UInt8] {
        FileHandle.standardError.write(Data(text.utf8))
        var current = termios()
        guard tcgetattr(STDIN_FILENO, &current) == 0 else { throw CLIError("cannot read the terminal's settings") }
        saved = current
        var quiet = current
        quiet.c_lflag &= ~tcflag_t(ECHO)
        for signalNumber in handledSignals {
            signal(signalNumber) { received in
                _ = tcsetattr(STDIN_FILENO, TCSANOW, &TerminalPrompt.saved)
                signal(received, SIG_DFL)
                raise(received)
            }
        }
        defer {
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &current)
            for signalNumber in handledSignals { signal(signalNumber, SIG_DFL) }
            FileHandle.standardError.write(Data("\n".utf8))
        }
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0 else { throw CLIError("cannot turn the terminal's echo off") }
        guard let line = readLine(strippingNewline: true) else { throw CLIError("no passphrase given") }
        return Array(line.utf8)
    }
}

/// Opening this home's store: the key `parley unlock` left in the session keyring first, then the
/// passphrase sources.
enum StoreAccess {
    static let sealedHelp =
        "this device's store is sealed: give its passphrase at the prompt on a terminal, with --passphrase-file or "
        + "\(PassphraseInput.fileVariable), or in \(PassphraseInput.variable); `parley unlock` keeps it unlocked for this login session"

    static func open(storePath: String, passphraseFile: String?) throws -> ParleyDevice {
        if let key = SessionKeyring.lookup(forStore: storePath) {
            do {
                return try ParleyDevice.open(storePath: storePath, unlock: .key(key), http: GlobalOptions.http, rateLimit: GlobalOptions.rateLimit)
            } catch DeviceStoreError.storeKeyMismatch {
                SessionKeyring.forget(forStore: storePath)  // the store was replaced: the key is of no use
            } catch DeviceStoreError.notSealed {
                SessionKeyring.forget(forStore: storePath)
            }
        }
        do {
            return try ParleyDevice.open(storePath: storePath, unlock: nil, http: GlobalOptions.http, rateLimit: GlobalOptions.rateLimit)
        } catch DeviceStoreError.passphraseRequired {
            guard let passphrase = try PassphraseInput.read(file: passphraseFile, confirm: false) else { throw CLIError(sealedHelp) }
            return try ParleyDevice.open(storePath: storePath, unlock: .passphrase(passphrase), http: GlobalOptions.http, rateLimit: GlobalOptions.rateLimit)
        }
    }

    /// The passphrase for a store `register` or `link join` is about to create: nil with `--no-passphrase`
    /// (after saying once that the store is not encrypted at rest), else one from the sources, else an error
    /// (before anything is created).
    static func passphraseForNewStore(options: GlobalOptions, noPassphrase: Bool, command: String) throws -> Passphrase? {
        if noPassphrase {
            Console.error("parley: note: --no-passphrase: this device's store (\(options.storePath)) is not encrypted at rest")
            return nil
        }
        guard let passphrase = try PassphraseInput.read(file: options.passphraseFile, confirm: true) else {
            throw CLIError(
                "\(command) needs a passphrase for the new store: type it at the prompt on a terminal, or give --passphrase-file, "
                    + "\(PassphraseInput.fileVariable) or \(PassphraseInput.variable); --no-passphrase creates a store that is not encrypted at rest")
        }
        return passphrase
    }
}

// MARK: commands

struct Unlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unlock this device's sealed store for the login session (Argon2id runs once, not on every command).",
        discussion: """
            Derives the store key from the passphrase once and keeps it in the Linux kernel's session keyring, readable
            only by processes of this login session (and root), until --timeout runs out or `parley lock`. Every other
            command uses it instead of asking for the passphrase. Where the keyring is not available (some containers),
            nothing is kept and each command derives the key from the passphrase.
            """)
    @OptionGroup var options: GlobalOptions
    @Option(help: "Minutes until the store locks itself (1 to 1440).") var timeout = Int(SessionKeyring.defaultTimeout / 60)

    func run() async throws {
        try await guarded {
            guard (1...Int(SessionKeyring.maximumTimeout / 60)).contains(timeout) else {
                throw CLIError("--timeout must be between 1 and \(SessionKeyring.maximumTimeout / 60) minutes")
            }
            guard FileManager.default.fileExists(atPath: options.storePath) else {
                throw CLIError("no device in \(options.homePath): run `parley register NAME --server URL` or `parley link join LINK` first")
            }
            // Always from the passphrase: unlocking again renews the timeout and proves the passphrase.
            let unsealed: ParleyDevice?
            do {
                unsealed = try ParleyDevice.open(storePath: options.storePath, unlock: nil)
            } catch DeviceStoreError.passphraseRequired {
                unsealed = nil
            } catch {
                throw CLIError(CLIError.describe(error))
            }
            if let unsealed {
                await unsealed.close()
                options.output.emit(
                    "this device's store is not sealed (not encrypted at rest): nothing to unlock",
                    ["event": "unlock", "sealed": .bool(false)])
                return
            }
            guard let passphrase = try PassphraseInput.read(file: options.passphraseFile, confirm: false) else {
                throw CLIError(StoreAccess.sealedHelp)
            }
            let device = try CLIError.wrap { try ParleyDevice.open(storePath: options.storePath, unlock: .passphrase(passphrase)) }
            let storeKey = device.store.storeKey
            await device.close()
            guard let key = storeKey else { throw CLIError("the store did not yield its key") }
            do {
                try SessionKeyring.store(key, forStore: options.storePath, timeout: UInt32(timeout * 60))
            } catch {
                Console.error("parley: \(error): the store stays locked and each command derives its key from the passphrase")
                options.output.emit("not unlocked", ["event": "unlock", "sealed": .bool(true), "cached": .bool(false)])
                return
            }
            options.output.emit(
                "unlocked \(options.homePath) for \(timeout) min (`parley lock` locks it now)",
                ["event": "unlock", "sealed": .bool(true), "cached": .bool(true), "minutes": .int(Int64(timeout))])
        }
    }
}

struct Lock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forget the store key `parley unlock` kept: the next command asks for the passphrase again.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await guarded {
            let forgotten = SessionKeyring.forget(forStore: options.storePath)
            options.output.emit(
                forgotten ? "locked \(options.homePath)" : "\(options.homePath) was not unlocked",
                ["event": "lock", "wasUnlocked": .bool(forgotten)])
        }
    }
}

struct PassphraseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passphrase", abstract: "Change the passphrase of this device's sealed store.", subcommands: [Change.self])

    struct Change: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change the store passphrase (the old one, then the new one twice).",
            discussion: """
                The current passphrase comes from --passphrase-file, PARLEY_PASSPHRASE_FILE, PARLEY_PASSPHRASE or the
                prompt; the new one from --new-passphrase-file, PARLEY_NEW_PASSPHRASE_FILE, PARLEY_NEW_PASSPHRASE or the
                prompt (twice). The change is one transaction: interrupted, the old passphrase still opens the store.
                The store is locked afterwards (`parley unlock` with the new passphrase). A store created with
                --no-passphrase cannot be sealed afterwards: register a new device with a passphrase instead.
                """)
        @OptionGroup var options: GlobalOptions
        @Option(help: "Read the new passphrase from the first line of this file.") var newPassphraseFile: String?

        func run() async throws {
            try await guarded {
                guard FileManager.default.fileExists(atPath: options.storePath) else {
                    throw CLIError("no device in \(options.homePath)")
                }
                guard let old = try PassphraseInput.read(file: options.passphraseFile, confirm: false, label: "current store passphrase") else {
                    throw CLIError(StoreAccess.sealedHelp)
                }
                let device: ParleyDevice
                do {
                    device = try ParleyDevice.open(storePath: options.storePath, unlock: .passphrase(old))
                } catch DeviceStoreError.notSealed {
                    throw CLIError("this device's store is not sealed (created with --no-passphrase); it cannot be sealed afterwards")
                } catch DeviceStoreError.wrongPassphrase {
                    throw DeviceStoreError.wrongPassphrase
                } catch {
                    throw CLIError(CLIError.describe(error))
                }
                do {
                    guard let new = try PassphraseInput.readNew(file: newPassphraseFile) else {
                        throw CLIError("passphrase change needs the new passphrase: at the prompt on a terminal, or --new-passphrase-file, "
                            + "\(PassphraseInput.newFileVariable) or \(PassphraseInput.newVariable)")
                    }
                    try CLIError.wrap { try device.store.changePassphrase(to: new) }
                } catch {
                    await device.close()
                    throw error
                }
                await device.close()
                SessionKeyring.forget(forStore: options.storePath)
                options.output.emit("passphrase changed; the store is locked", ["event": "passphraseChanged"])
            }
        }
    }
}
