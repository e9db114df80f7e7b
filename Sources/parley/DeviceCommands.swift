import ArgumentParser
import Foundation
import ParleyClient
import ParleyWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `parley devices` (list) and `parley devices remove ID`.
struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices of this account (or of another), or remove one of this account's devices.",
        subcommands: [List.self, Remove.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the devices of this account (or of another).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Account (default: this one).") var account: String?

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let name = account ?? device.account.name
                let devices: [DeviceInfo]
                do {
                    devices = try await CLIError.wrap { try await device.deviceList(of: name) }
                } catch {
                    await device.close()
                    throw error
                }
                IdentityWarnings.warn(device, about: [name])
                for info in devices {
                    let marker = name == device.account.name && info.deviceId == device.account.deviceId ? " (this device)" : ""
                    options.output.emit(
                        "\(name) device \(info.deviceId)\(info.name.map { " \"\($0)\"" } ?? "") registration \(info.registrationId)\(marker)",
                        [
                            "account": .string(name), "device": .int(Int64(info.deviceId)), "registrationId": .int(Int64(info.registrationId)),
                            "name": info.name.map(JSONValue.string) ?? .null,
                        ])
                }
                await device.close()
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a device from this account (see `parley devices`).",
            discussion: """
                The relay deletes the device's keys and queued messages; the device can no longer send or receive and
                says so on its next command. Removing this device itself asks first (on a terminal; --yes in scripts):
                afterwards this folder keeps its history but can send nothing.
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The device id (from `parley devices`).") var deviceId: UInt32
        @Flag(help: "Remove this device itself without asking.") var yes = false

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let me = device.account
                do {
                    if deviceId == me.deviceId && !yes {
                        guard isatty(STDIN_FILENO) == 1 else {
                            throw CLIError("device \(deviceId) is this device: removing it needs --yes when not asked on a terminal")
                        }
                        FileHandle.standardOutput.write(Data(
                            "Remove this device (\(me.name) device \(deviceId)) from the account? It will no longer send or receive. [y/N] "
                                .utf8))
                        guard let answer = readLine(), answer.lowercased().hasPrefix("y") else { throw CLIError("not removed") }
                    }
                    try await CLIError.wrap { try await device.removeDevice(deviceId) }
                } catch {
                    await device.close()
                    throw error
                }
                let itself = deviceId == me.deviceId
                options.output.emit(
                    itself
                        ? "removed this device (\(me.name) device \(deviceId)) from the account; this folder can no longer send or receive"
                        : "removed \(me.name) device \(deviceId)",
                    ["event": "deviceRemoved", "account": .string(me.name), "device": .int(Int64(deviceId)), "thisDevice": .bool(itself)])
                await device.close()
            }
        }
    }
}
