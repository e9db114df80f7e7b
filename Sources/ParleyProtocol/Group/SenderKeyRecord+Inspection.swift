extension SenderKeyRecord {
    /// The key ids of the states held, newest first (no secret material): lets a client tell
    /// which generation of a member's sender key it has.
    public var keyIds: [UInt32] { states.map(\.keyId) }
}
