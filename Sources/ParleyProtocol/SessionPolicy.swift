/// Which sessions a device agrees to create. Existing sessions are never affected: a policy
/// decides only whether a new one may be version 3 (X3DH, X25519 alone).
public struct SessionPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Refuse new version-3 sessions in both directions, as libsignal does since v0.75: a bundle
    /// without a Kyber prekey is refused (`x3dhRejected`) before anything is drawn or stored,
    /// and a version-3 PreKeySignalMessage that matches no existing session is refused
    /// (`x3dhRejected`) before any prekey is looked up. Sessions already made in version 3 keep
    /// working either way.
    public var requirePostQuantum: Bool

    public init(requirePostQuantum: Bool) {
        self.requirePostQuantum = requirePostQuantum
    }

    /// The default for new installations: post-quantum sessions only.
    public static let requirePostQuantum = SessionPolicy(requirePostQuantum: true)

    /// Also accept new version-3 sessions: for peers that publish no Kyber prekey (python-axolotl,
    /// devices registered before PQXDH). A bundle with a Kyber prekey still gives a version-4
    /// session.
    public static let allowClassical = SessionPolicy(requirePostQuantum: false)

    public static let `default` = requirePostQuantum

    public var description: String { requirePostQuantum ? "requirePostQuantum" : "allowClassical" }
}
