import ArgumentParser
import Foundation
import ParleyClient

struct Group: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Groups of up to 500 members (messages go through sender keys).",
        subcommands: [Create.self, List.self, Add.self, Remove.self, Admin.self, Leave.self, Rename.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a group.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Title (seen only by members).") var title: String
        @Argument(help: "Member accounts.") var members: [String]

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let id = try await CLIError.wrap { try await device.createGroup(title: title, members: members) }
                options.output.emit("created group #\(title) \(id)", ["event": "groupCreated", "group": .string(id), "title": .string(title)])
                await device.close()
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the groups this device knows.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                for (conversation, members) in try await device.groups() {
                    guard case .group(let id) = conversation.kind else { continue }
                    let admins = try await device.groupView(id).admins
                    let shown = members.map { admins.contains($0) ? "\($0) (admin)" : $0 }
                    options.output.emit(
                        "#\(conversation.title ?? "?") \(id): \(members.contains(device.account.name) ? shown.joined(separator: ", ") : "(not a member)")",
                        [
                            "group": .string(id), "title": conversation.title.map(JSONValue.string) ?? .null,
                            "members": .array(members.map(JSONValue.string)), "admins": .array(admins.map(JSONValue.string)),
                        ])
                }
                await device.close()
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add members (admins only).")
        @OptionGroup var options: GlobalOptions
        @Argument var group: String
        @Argument var members: [String]

        func run() async throws {
            try await guarded {
                try await changeMembership(options, group) { device, id in
                    try await device.addMembers(members, to: id)
                    return ("added \(members.joined(separator: ", "))", ["event": "membersAdded", "group": .string(id)])
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove members (admins only; sender keys are rotated before the next message).")
        @OptionGroup var options: GlobalOptions
        @Argument var group: String
        @Argument var members: [String]

        func run() async throws {
            try await guarded {
                try await changeMembership(options, group) { device, id in
                    try await device.removeMembers(members, from: id)
                    return ("removed \(members.joined(separator: ", "))", ["event": "membersRemoved", "group": .string(id)])
                }
            }
        }
    }

    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make members admins (admins add and remove members and make admins; only admins may).")
        @OptionGroup var options: GlobalOptions
        @Argument var group: String
        @Argument var members: [String]

        func run() async throws {
            try await guarded {
                try await changeMembership(options, group) { device, id in
                    try await device.makeAdmins(members, in: id)
                    return (
                        "\(members.joined(separator: ", ")) \(members.count == 1 ? "is now an admin" : "are now admins")",
                        ["event": "adminsAdded", "group": .string(id), "members": .array(members.map(JSONValue.string))]
                    )
                }
            }
        }
    }

    struct Leave: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Leave a group (anyone may; if no admin is left, the longest-standing member becomes one).")
        @OptionGroup var options: GlobalOptions
        @Argument var group: String

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let id = try device.resolveGroup(group)
                try await CLIError.wrap { try await device.leaveGroup(id) }
                options.output.emit("left \(id)", ["event": "left", "group": .string(id)])
                await device.close()
            }
        }
    }

    struct Rename: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename a group (the title travels encrypted).")
        @OptionGroup var options: GlobalOptions
        @Argument var group: String
        @Argument var title: String

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let id = try device.resolveGroup(group)
                try await CLIError.wrap { try await device.renameGroup(id, title: title) }
                options.output.emit("renamed to #\(title)", ["event": "renamed", "group": .string(id), "title": .string(title)])
                await device.close()
            }
        }
    }
}

/// The shape of the membership commands: open this device, resolve `group` (title or id), make the
/// change (relay errors worded for the CLI), print what it returns, close the device.
private func changeMembership(
    _ options: GlobalOptions, _ group: String,
    _ change: (ParleyDevice, String) async throws -> (line: String, fields: [String: JSONValue])
) async throws {
    let device = try options.openDevice()
    let id = try device.resolveGroup(group)
    let result = try await CLIError.wrap { try await change(device, id) }
    options.output.emit(result.line, result.fields)
    await device.close()
}
