import Foundation
import ParleyClient
import ParleyProtocol

/// Human-readable lines by default; with `--json`, one JSON object per line.
struct Output: Sendable {
    let json: Bool

    func emit(_ human: @autoclosure () -> String, _ fields: [String: JSONValue]) {
        Console.out(json ? JSONValue.object(fields).rendered : human())
    }

    static func time(_ millis: Int64?) -> String {
        guard let millis else { return "--:--:--" }
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    /// A history line's receipt summary: "delivered 2/2" (devices of a 1:1 recipient), "delivered to 5 of 5,
    /// read by 3 of 5" (group members), "sent", "pending", "failed".
    static func compact(_ summary: ReceiptSummary, group: Bool) -> String {
        guard summary.recipients > 0 else { return "" }
        if summary.failed == summary.recipients { return "failed" }
        if summary.pending == summary.recipients { return "pending" }
        var parts: [String] = []
        if group {
            parts.append(summary.delivered == 0 ? "sent" : "delivered to \(summary.delivered) of \(summary.total)")
            if summary.read > 0 { parts.append("read by \(summary.read) of \(summary.total)") }
        } else if summary.perDevice {
            parts.append(summary.delivered == 0 ? "sent" : "delivered \(summary.delivered)/\(summary.total)")
            if summary.read > 0 { parts.append("read \(summary.read)/\(summary.total)") }
        } else {
            parts.append(summary.read > 0 ? "read" : summary.delivered > 0 ? "delivered" : "sent")
        }
        if summary.failed > 0 { parts.append("failed for \(summary.failed)") }
        if summary.pending > 0 { parts.append("pending for \(summary.pending)") }
        return parts.joined(separator: ", ")
    }

    func message(_ message: StoredMessage, conversation: String, me: String, receipts: ReceiptSummary? = nil) {
        if message.notice {
            // A group change ("#team alice removed carol"), or a local event of a 1:1 conversation
            // ("-- your safety number with bob changed").
            let text = message.body ?? "<unreadable>"
            let prefix = conversation.hasPrefix("#") ? conversation : "--"
            emit(
                "[\(Self.time(message.sentAt ?? message.receivedAt))] \(prefix) \(text)",
                [
                    "event": "notice", "conversation": .string(conversation), "from": .string(message.sender.name),
                    "text": .string(text), "sentAt": message.sentAt.map(JSONValue.int) ?? .null,
                ])
            return
        }
        let isGroup = conversation.hasPrefix("#")
        let who: String
        if message.outgoing {
            let from = message.sender.name == me ? "me" : message.sender.name
            who = isGroup ? "\(conversation) \(from)" : "\(from) → \(conversation)"
        } else {
            who = isGroup ? "\(conversation) \(message.sender.name)" : message.sender.name
        }
        let body =
            !message.couldNotDecrypt ? (message.body ?? "<unreadable>")
            : message.repairUnavailable ? "<could not decrypt; the sender could not resend it>"
            : "<could not decrypt; repairing the session>"
        let statuses: String
        if let receipts, message.outgoing, receipts.recipients > 0 {
            statuses = "  [" + Self.compact(receipts, group: isGroup) + "]"
        } else if message.outgoing && !message.statuses.isEmpty {
            statuses = "  [" + message.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.rawValue)" }.joined(separator: ", ") + "]"
        } else {
            statuses = ""
        }
        var receiptFields: JSONValue = .null
        if let receipts, message.outgoing, receipts.recipients > 0 {
            receiptFields = .object([
                "total": .int(Int64(receipts.total)), "delivered": .int(Int64(receipts.delivered)), "read": .int(Int64(receipts.read)),
                "per": .string(receipts.perDevice ? "device" : "account"),
            ])
        }
        emit(
            "[\(Self.time(message.sentAt ?? message.receivedAt))] \(who): \(body)\(statuses)",
            [
                "event": "message", "conversation": .string(conversation), "id": .string(message.messageUid ?? ""),
                "from": .string(message.sender.name), "device": .int(Int64(message.sender.deviceId)), "outgoing": .bool(message.outgoing),
                "body": message.body.map(JSONValue.string) ?? .null, "undecryptable": .bool(message.couldNotDecrypt),
                "lost": .bool(message.repairUnavailable),
                "sentAt": message.sentAt.map(JSONValue.int) ?? .null,
                "statuses": .object(message.statuses.mapValues { .string($0.rawValue) }), "receipts": receiptFields,
            ])
    }

    /// A conversation's display name: the peer, or `#title (group id)`.
    static func name(of conversation: Conversation) -> String {
        switch conversation.kind {
        case .direct(let peer): return peer
        case .group(let groupId): return "#\(conversation.title ?? String(groupId.prefix(8)))"
        }
    }
}

/// A tiny JSON value, rendered with sorted keys (stable output for scripts and tests).
enum JSONValue: Sendable, ExpressibleByStringLiteral {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    init(stringLiteral value: String) { self = .string(value) }

    var rendered: String {
        switch self {
        case .string(let s): return Self.quote(s)
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.sorted { $0.key < $1.key }.map { Self.quote($0.key) + ":" + $0.value.rendered }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
