/// The account-name rule, one definition for the relay (which enforces it) and clients (which check a name
/// before asking, and print the rule in their help): 3...32 bytes of `a-z 0-9 _ -`. No dots (`.` separates
/// name and device id in credentials), no capitals (names compare bytewise).
public enum AccountNameRule {
    /// Allowed length in bytes (all allowed characters are one byte).
    public static let length = 3...32

    /// The rule in words, for help texts and error lines.
    public static let summary = "3 to 32 characters: lowercase a-z, digits 0-9, '_' and '-'"

    /// What is wrong with a name.
    public enum Violation: Error, Equatable, Sendable, CustomStringConvertible {
        case length
        case character

        public var description: String {
            switch self {
            case .length: return "name must be 3...32 characters"
            case .character: return "name may only contain a-z, 0-9, _ and -"
            }
        }
    }

    /// nil when `name` is acceptable.
    public static func violation(in name: String) -> Violation? {
        guard length.contains(name.utf8.count) else { return .length }
        for byte in name.utf8 {
            let ok = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x5F || byte == 0x2D
            guard ok else { return .character }
        }
        return nil
    }
}
