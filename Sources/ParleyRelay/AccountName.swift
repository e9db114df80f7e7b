/// Validation of account names: 3...32 of `a-z 0-9 _ -` (no dots: `.` separates name and device id in credentials).
enum AccountName {
    static func validate(_ name: String) throws(RelayError) {
        guard RelayLimits.accountNameLength.contains(name.utf8.count) else {
            throw .invalidField("name must be 3...32 characters")
        }
        for byte in name.utf8 {
            let ok = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x5F || byte == 0x2D
            guard ok else { throw .invalidField("name may only contain a-z, 0-9, _ and -") }
        }
    }
}
