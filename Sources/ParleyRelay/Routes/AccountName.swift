import ParleyWire

/// Validation of account names: the shared rule (`ParleyWire.AccountNameRule`), as a relay error.
enum AccountName {
    static func validate(_ name: String) throws(RelayError) {
        if let violation = AccountNameRule.violation(in: name) { throw .invalidField(violation.description) }
    }
}
