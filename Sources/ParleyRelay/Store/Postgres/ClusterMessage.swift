import Foundation
import ParleyWire

/// What one relay node tells another through PostgreSQL notifications (`pg_notify` on the receiving node's
/// channel). Text, one kind letter, a space, then space-separated items:
///
/// | kind | items | meaning |
/// | --- | --- | --- |
/// | `d` | `<account id>.<device id>.<seq>` | queue entries committed for devices with a session on the receiving node (read them from `queue_entry`) |
/// | `s` | `<account id>.<device id>.<connection id>` | a newer session of the device registered elsewhere: close this one (1008) |
/// | `r` | `<account id>.<device id>` | the device was removed: close its session (1008) |
/// | `p` | `<account name>` | the account's connections changed: re-read its presence for local subscribers |
/// | `t` | one JSON `ForwardedFrame` | an ephemeral frame (typing) for the account's devices on the receiving node |
///
/// Envelopes never travel in notifications: only ids, the payload is read from the tables.
enum ClusterMessage {
    case entries([(DeviceAddress, Int64)])
    case supersede([(DeviceAddress, UInt64)])
    case removed([DeviceAddress])
    case presence([String])
    case frame(ForwardedFrame)

    /// An ephemeral frame for one account's devices, except one.
    struct ForwardedFrame: Codable, Sendable {
        var account: String
        var exceptAccountId: Int64?
        var exceptDeviceId: UInt32?
        var frame: ServerFrame

        var except: DeviceAddress? {
            guard let exceptAccountId, let exceptDeviceId else { return nil }
            return DeviceAddress(accountId: exceptAccountId, deviceId: exceptDeviceId)
        }
    }

    /// Payloads of one kind holding `items`, each within `PostgresStoreLimits.maxNotifyPayloadBytes`.
    static func pack(_ kind: Character, _ items: [String]) -> [String] {
        var payloads: [String] = []
        var current = String(kind)
        for item in items {
            if current.utf8.count + 1 + item.utf8.count > PostgresStoreLimits.maxNotifyPayloadBytes, current.count > 1 {
                payloads.append(current)
                current = String(kind)
            }
            current += " " + item
        }
        if current.count > 1 { payloads.append(current) }
        return payloads
    }

    /// Parses a payload; nil for anything malformed (dropped: notifications only come from relay nodes, but a
    /// bad one must not take the listener down).
    static func parse(_ payload: String) -> ClusterMessage? {
        guard let kind = payload.first else { return nil }
        let body = payload.dropFirst()
        if kind == "t" {
            guard let data = body.drop(while: { $0 == " " }).data(using: .utf8),
                let frame = try? WireCoding.decoder().decode(ForwardedFrame.self, from: data)
            else { return nil }
            return .frame(frame)
        }
        let items = body.split(separator: " ")
        switch kind {
        case "d":
            var entries: [(DeviceAddress, Int64)] = []
            for item in items {
                let parts = item.split(separator: ".")
                guard parts.count == 3, let account = Int64(parts[0]), let device = UInt32(parts[1]), let seq = Int64(parts[2])
                else { return nil }
                entries.append((DeviceAddress(accountId: account, deviceId: device), seq))
            }
            return .entries(entries)
        case "s":
            var supersede: [(DeviceAddress, UInt64)] = []
            for item in items {
                let parts = item.split(separator: ".")
                guard parts.count == 3, let account = Int64(parts[0]), let device = UInt32(parts[1]), let id = UInt64(parts[2])
                else { return nil }
                supersede.append((DeviceAddress(accountId: account, deviceId: device), id))
            }
            return .supersede(supersede)
        case "r":
            var removed: [DeviceAddress] = []
            for item in items {
                let parts = item.split(separator: ".")
                guard parts.count == 2, let account = Int64(parts[0]), let device = UInt32(parts[1]) else { return nil }
                removed.append(DeviceAddress(accountId: account, deviceId: device))
            }
            return .removed(removed)
        case "p":
            return .presence(items.map(String.init))
        default:
            return nil
        }
    }
}
