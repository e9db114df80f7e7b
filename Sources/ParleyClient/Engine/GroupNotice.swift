import ParleyWire

/// The sentences group changes read as in the history ("alice removed carol", "bob left").
/// Membership and admin changes come from the relay's events (it holds the membership); a new
/// title comes end to end from the member who set it.
enum GroupNotice {
    static func sentence(for event: GroupEvent) -> String {
        let actor = event.actor
        var text: String
        switch event.action {
        case .created:
            let others = event.members.filter { $0 != actor }
            text = others.isEmpty ? "\(actor) created the group" : "\(actor) created the group with \(list(others))"
        case .membersAdded:
            text = "\(actor) added \(list(event.members))"
        case .membersRemoved:
            let others = event.members.filter { $0 != actor }
            if others.isEmpty {
                text = "\(actor) left"
            } else {
                text = "\(actor) removed \(list(others))"
                if event.members.contains(actor) { text += " and left" }
            }
        case .adminsAdded:
            text = "\(actor) made \(list(event.members)) \(event.members.count == 1 ? "an admin" : "admins")"
        }
        if let promoted = event.promoted, !promoted.isEmpty {
            text += "; \(list(promoted)) \(promoted.count == 1 ? "is now an admin" : "are now admins")"
        }
        return text
    }

    static func renamed(by sender: String, to title: String) -> String {
        "\(sender) renamed the group to \u{201C}\(title)\u{201D}"
    }

    /// "a", "a and b", "a, b and c".
    static func list(_ names: [String]) -> String {
        switch names.count {
        case 0: return "nobody"
        case 1: return names[0]
        default: return names.dropLast().joined(separator: ", ") + " and " + (names.last ?? "")
        }
    }
}
