import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyWire

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "End-to-end encrypted messaging from the terminal. One --home folder is one device.",
        discussion: """
            Start with `parley register NAME --server http://127.0.0.1:8080`, or link this device to an
            existing account with `parley link join LINK` (the link comes from `parley link start` on a
            device you already have). The store passphrase, if any, is read from PARLEY_PASSPHRASE.
            """,
        subcommands: [
            Register.self, Whoami.self, Devices.self, Link.self, Send.self, Sync.self, Listen.self, Chat.self,
            History.self, Search.self, Read.self, Typing.self, Group.self, Presence.self, SafetyNumberCommand.self, Verify.self, Trust.self,
        ])
}

struct GlobalOptions: ParsableArguments {
    @Option(help: "This device's folder; its store is <home>/device.sqlite. Default: $PARLEY_HOME or ~/.parley.")
    var home: String?

    @Option(help: "Relay URL, e.g. http://127.0.0.1:8080 (for register and link; remembered in the store).")
    var server: String?

    @Flag(help: "Machine-readable output: one JSON object per line.")
    var json = false

    var homePath: String {
        let raw = home ?? ProcessInfo.processInfo.environment["PARLEY_HOME"] ?? "~/.parley"
        return (raw as NSString).expandingTildeInPath
    }

    var storePath: String { homePath + "/device.sqlite" }

    var passphrase: Passphrase? {
        guard let text = ProcessInfo.processInfo.environment["PARLEY_PASSPHRASE"], !text.isEmpty else { return nil }
        return Passphrase(text)
    }

    var output: Output { Output(json: json) }

    /// Opens this home's device, or fails with one clear line.
    func openDevice() throws -> ParleyDevice {
        guard FileManager.default.fileExists(atPath: storePath) else {
            throw CLIError("no device in \(homePath): run `parley register NAME --server URL` or `parley link join LINK` first")
        }
        let device = try CLIError.wrap { try ParleyDevice.open(storePath: storePath, passphrase: passphrase, rateLimit: Self.rateLimit) }
        if let reset = device.rollbackReset {
            FileHandle.standardError.write(Data(
                ("warning: this device's store was restored from an older copy; \(reset.sessions) sessions and "
                    + "\(reset.senderKeys) sender keys were reset (new sessions start with the next messages)\n").utf8))
        }
        return device
    }

    /// The relay's rate limits are waited out (bounded) with a line on standard error per wait, so that a
    /// slow command says why it is slow; it is never reported as an unreachable relay.
    static let rateLimit = RateLimitPolicy(onWait: { seconds in
        FileHandle.standardError.write(Data("parley: rate limited by the relay; retrying in \(seconds) s\n".utf8))
    })

    func ensureHome() throws {
        try FileManager.default.createDirectory(atPath: homePath, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}

/// One clear line on standard error and a non-zero exit status.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as CLIError { throw error } catch { throw CLIError(describe(error)) }
    }

    static func wrap<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as CLIError { throw error } catch { throw CLIError(describe(error)) }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
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
        } catch {
            let line = (error as? CLIError)?.description ?? CLIError.describe(error)
            FileHandle.standardError.write(Data("parley: \(line)\n".utf8))
            throw ExitCode.failure
        }
    }
}
