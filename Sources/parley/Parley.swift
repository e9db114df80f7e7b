import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyWire
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Parley: AsyncParsableCommand {
    /// Exit status of `sync` when it received everything but left outbox entries queued (a temporary failure:
    /// the next command that reaches the relay sends them). sysexits.h's EX_TEMPFAIL.
    static let exitQueued: Int32 = 75
    /// Exit status when the store passphrase is wrong (sysexits.h's EX_NOPERM), so scripts can tell it from
    /// other failures.
    static let exitWrongPassphrase: Int32 = 77

    /// The entry point: a closed standard output (`parley sync | head -1`) must not kill the process, and the
    /// global options may come before the subcommand (`parley --json sync`).
    static func main() async {
        // Without this a write to a closed pipe kills the process with SIGPIPE; with it the write fails with
        // EPIPE, and `Console` stops writing to standard output while the command finishes its work.
        signal(SIGPIPE, SIG_IGN)
        await main(GlobalArguments.reordered(Array(CommandLine.arguments.dropFirst())))
    }

    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "End-to-end encrypted messaging from the terminal. One --home folder is one device.",
        discussion: """
            Start with `parley register NAME --server http://127.0.0.1:8080`, or link this device to an
            existing account with `parley link join LINK` (the link comes from `parley link start` on a
            device you already have). The store is sealed (encrypted at rest) under a passphrase: it comes from
            --passphrase-file or PARLEY_PASSPHRASE_FILE (the file's first line), else PARLEY_PASSPHRASE (for scripts;
            the environment of a process is visible to the same user's processes), else a no-echo prompt on a
            terminal. `parley unlock` derives the store key once and keeps it for the login session.
            """,
        subcommands: [
            Register.self, Whoami.self, Devices.self, Link.self, Send.self, Sync.self, Listen.self, Chat.self,
            History.self, Info.self, Search.self, Read.self, Typing.self, Group.self, Presence.self, SafetyNumberCommand.self, Verify.self, Trust.self,
            Push.self, Unlock.self, Lock.self, PassphraseCommand.self,
        ])
}

struct GlobalOptions: ParsableArguments {
    @Option(help: "This device's folder; its store is <home>/device.sqlite. Default: $PARLEY_HOME or ~/.parley.")
    var home: String?

    @Option(help: "Relay URL, http:// or https://, e.g. http://127.0.0.1:8080 (for register and link; remembered in the store).")
    var server: String?

    @Flag(help: "Machine-readable output: one JSON object per line.")
    var json = false

    @Option(help: "Read the store passphrase from the first line of this file (also $PARLEY_PASSPHRASE_FILE).")
    var passphraseFile: String?

    var homePath: String {
        let raw = home ?? ProcessInfo.processInfo.environment["PARLEY_HOME"] ?? "~/.parley"
        return (raw as NSString).expandingTildeInPath
    }

    var storePath: String { homePath + "/device.sqlite" }

    var output: Output { Output(json: json) }

    /// `--server`, checked: an http or https URL with a host (the relay's address for `register` and
    /// `link join`), else one clear line.
    func serverURL(for command: String) throws -> String {
        guard let raw = server else { throw CLIError("\(command) needs --server URL (e.g. --server http://127.0.0.1:8080)") }
        guard let url = URL(string: raw), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil, url.user == nil
        else {
            throw CLIError("--server must be an http:// or https:// URL such as http://127.0.0.1:8080, not \"\(raw)\"")
        }
        CLIError.relayURL.withLock { $0 = raw }
        return raw
    }

    /// Opens this home's device, or fails with one clear line.
    func openDevice() throws -> ParleyDevice {
        guard FileManager.default.fileExists(atPath: storePath) else {
            throw CLIError("no device in \(homePath): run `parley register NAME --server URL` or `parley link join LINK` first")
        }
        let device = try CLIError.wrap { try StoreAccess.open(storePath: storePath, passphraseFile: passphraseFile) }
        CLIError.relayURL.withLock { $0 = device.account.serverURL }
        if let reset = device.rollbackReset {
            Console.error(
                "warning: this device's store was restored from an older copy; \(reset.sessions) sessions and "
                    + "\(reset.senderKeys) sender keys were reset (new sessions start with the next messages)")
        }
        return device
    }

    /// The relay connection of every command: a refused connection fails at once ("cannot reach the relay"),
    /// instead of after the 10 s connect timeout (see `ParleyHTTP`).
    static let http = ParleyHTTP.shared

    /// The relay's rate limits are waited out (bounded) with a line on standard error per wait, so that a
    /// slow command says why it is slow; it is never reported as an unreachable relay.
    static let rateLimit = RateLimitPolicy(onWait: { seconds in
        Console.error("parley: rate limited by the relay; retrying in \(seconds) s")
    })

    func ensureHome() throws {
        try FileManager.default.createDirectory(atPath: homePath, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}

/// One clear line on standard error and a non-zero exit status.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    /// The relay this command talks to (set when a device is opened or `--server` is read), so that a
    /// transport failure reads "cannot reach the relay at http://…: connection refused".
    static let relayURL = Mutex<String?>(nil)

    /// "cannot reach the relay at URL: reason".
    static func unreachable(_ reason: String) -> String {
        let url = relayURL.withLock { $0 } ?? "(no relay configured)"
        return "cannot reach the relay at \(url): \(reason)"
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as CLIError { throw error } catch DeviceStoreError.wrongPassphrase {
            throw DeviceStoreError.wrongPassphrase  // its own exit status (`guarded`)
        } catch { throw CLIError(describe(error)) }
    }

    static func wrap<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as CLIError { throw error } catch DeviceStoreError.wrongPassphrase {
            throw DeviceStoreError.wrongPassphrase
        } catch { throw CLIError(describe(error)) }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let error where TransportFailure.reason(error) != nil: return unreachable(TransportFailure.reason(error) ?? "")
        case ClientError.relay(let inner) where TransportFailure.reason(inner) != nil: return unreachable(TransportFailure.reason(inner) ?? "")
        case let error as ClientError: return error.description
        case let error as DeviceStoreError: return "store: \(error)"
        case let error as RelayClientError:
            switch error {
            case .rateLimited(let seconds, _): return "rate limited by the relay; try again in \(seconds) s"
            case .deviceRemoved: return ClientError.deviceRemoved.description
            case .rejected(_, .notAdmin?, let message): return message
            case .rejected(_, .recoveryRefused?, let message): return "account recovery refused: \(message)"
            case .rejected(let status, let code, let message): return "relay refused (\(status)\(code.map { " \($0.rawValue)" } ?? "")): \(message)"
            default: return "relay: \(error)"
            }
        default: return "\(error)"
        }
    }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning any error into one line on stderr and exit status 1.
    func guarded(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as ExitCode {
            throw error
        } catch DeviceStoreError.wrongPassphrase {
            Console.error("parley: wrong passphrase for this device's store (nothing was changed)")
            throw ExitCode(Parley.exitWrongPassphrase)
        } catch {
            let line = (error as? CLIError)?.description ?? CLIError.describe(error)
            Console.error("parley: \(line)")
            throw ExitCode.failure
        }
    }
}

/// The global options (`--json`, `--home`, `--server`) belong to each subcommand; written before it
/// (`parley --json sync`) they are moved to just after the subcommand's name, so they work in either place.
enum GlobalArguments {
    static let flags: Set<String> = ["--json"]
    static let options: Set<String> = ["--home", "--server", "--passphrase-file"]

    static func reordered(_ arguments: [String]) -> [String] {
        var command: any ParsableCommand.Type = Parley.self
        var path: [String] = []
        var moved: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if flags.contains(argument) || options.contains(where: { argument.hasPrefix($0 + "=") }) {
                moved.append(argument)
                index += 1
            } else if options.contains(argument), index + 1 < arguments.count {
                moved += [argument, arguments[index + 1]]
                index += 2
            } else if let sub = command.configuration.subcommands.first(where: { $0._commandName == argument }) {
                path.append(argument)
                command = sub
                index += 1
            } else {
                break
            }
        }
        guard !path.isEmpty, !moved.isEmpty else { return arguments }
        return path + moved + arguments[index...]
    }
}

/// Standard output and error, written with `write(2)`: a reader that went away (`parley sync | head -1`)
/// makes writes fail with EPIPE (SIGPIPE is ignored), after which standard output is left alone and the
/// command finishes quietly (Foundation's `FileHandle.write` would trap on the error instead).
enum Console {
    private static let outputClosed = Atomic<Bool>(false)
    private static let errorClosed = Atomic<Bool>(false)

    static func out(_ line: String) { write(line + "\n", to: 1, closed: outputClosed) }

    /// Writes `text` to standard output as is (no newline: a progress line rewritten with `\r`).
    static func outRaw(_ text: String) { write(text, to: 1, closed: outputClosed) }

    static func error(_ line: String) { write(line + "\n", to: 2, closed: errorClosed) }

    private static func write(_ text: String, to descriptor: Int32, closed: borrowing Atomic<Bool>) {
        guard !closed.load(ordering: .relaxed) else { return }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                #if canImport(Glibc)
                return Glibc.write(descriptor, base + offset, raw.count - offset)
                #elseif canImport(Musl)
                return Musl.write(descriptor, base + offset, raw.count - offset)
                #else
                return Darwin.write(descriptor, base + offset, raw.count - offset)
                #endif
            }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                closed.store(true, ordering: .relaxed)  // EPIPE (or another failure): nobody reads any more
                return
            }
        }
    }
}
