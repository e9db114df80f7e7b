import ArgumentParser
import Foundation
import ParleyClient
import ParleyWire

struct Link: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Link another device to this account (the identity passes between the devices end to end).",
        subcommands: [Start.self, Join.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On a device you have: show a one-time link, wait for the new device, approve it.")
        @OptionGroup var options: GlobalOptions
        @Flag(help: "Approve the device that claims the link without asking.") var yes = false
        @Option(help: "Seconds to wait for the new device.") var timeout = 300

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let link = try await CLIError.wrap { try await device.startLink() }
                options.output.emit(
                    "link (valid 10 minutes; whoever has it can join this account): \(link.linkString)\non the new device run: parley link join \(link.linkString) --server \(device.account.serverURL)",
                    ["event": "link", "link": .string(link.linkString), "expiresAt": .int(link.expiresAt)])
                let claim = try await CLIError.wrap { try await device.awaitClaim(link, timeout: .seconds(timeout)) }
                let label = "device \(claim.deviceId.map(String.init) ?? "?")\(claim.name.map { " \"\($0)\"" } ?? "")"
                if !yes {
                    FileHandle.standardOutput.write(Data("\(label) wants to join \(device.account.name). Approve? [y/N] ".utf8))
                    guard let answer = readLine(), answer.lowercased().hasPrefix("y") else {
                        link.cancel()
                        throw CLIError("not approved")
                    }
                }
                try await CLIError.wrap { try await device.approve(link, claim: claim) }
                options.output.emit(
                    "approved \(label): it now has this account's identity, contacts and history",
                    ["event": "approved", "device": claim.deviceId.map { .int(Int64($0)) } ?? .null])
                await device.close()
            }
        }
    }

    struct Join: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "On the new device: join the account that showed this link.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The link shown by `parley link start`.") var link: String
        @Option(help: "A name for this device.") var deviceName: String?
        @Option(help: "Seconds to wait for the approval.") var timeout = 300
        @Flag(help: "Create a store that is NOT encrypted at rest (no passphrase). Without it the store is sealed.") var noPassphrase = false

        func run() async throws {
            try await guarded {
                let server = try options.serverURL(for: "link join")
                let passphrase = try StoreAccess.passphraseForNewStore(options: options, noPassphrase: noPassphrase, command: "link join")
                try options.ensureHome()
                let (device, imported) = try await CLIError.wrap {
                    try await ParleyDevice.join(
                        linkString: link, serverURL: server, storePath: options.storePath, passphrase: passphrase,
                        deviceName: deviceName, timeout: .seconds(timeout))
                }
                options.output.emit(
                    "linked: \(device.account.name), device \(device.account.deviceId); \(imported) message(s) of history imported",
                    ["event": "linked", "account": .string(device.account.name), "device": .int(Int64(device.account.deviceId)), "imported": .int(Int64(imported))])
                await device.close()
            }
        }
    }
}
