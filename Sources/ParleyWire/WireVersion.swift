/// Version of the client/relay wire protocol described in Specs/relay-protocol.md.
public enum WireVersion {
    /// Current protocol version; every HTTP path starts with `/v1`.
    public static let current = 1
}
