/// Everything stored for one address: the current session and up to
/// `Limits.maxArchivedStates` previous ones (newest first), kept so that messages sent under a
/// replaced session still decrypt.
public struct SessionRecord: Sendable {
    var current: SessionState?
    var previous: [SessionState] = []

    public init() {}

    init(current: SessionState?, previous: [SessionState] = []) {
        self.current = current
        self.previous = previous
    }

    /// True when there is a current session.
    public var hasCurrentSession: Bool { current != nil }

    /// The peer's registration id in the current session (to detect a reinstalled device).
    public var remoteRegistrationId: UInt32? { current?.remoteRegistrationId }

    /// The peer's identity key in the current session.
    public var remoteIdentity: IdentityKey? { current?.remoteIdentity }

    /// True when the current session still sends PreKeySignalMessages (the peer has not answered).
    public var isAwaitingFirstReply: Bool { current?.pendingPreKey != nil }

    /// Makes `state` current, archiving the current one.
    mutating func promote(_ state: SessionState) {
        if let old = current {
            previous.insert(old, at: 0)
            if previous.count > Limits.maxArchivedStates { previous.removeLast(previous.count - Limits.maxArchivedStates) }
        }
        current = state
    }

    /// Archives the current session (e.g. after a decryption-error repair), leaving none current.
    public mutating func archiveCurrentState() {
        guard let old = current else { return }
        previous.insert(old, at: 0)
        if previous.count > Limits.maxArchivedStates { previous.removeLast(previous.count - Limits.maxArchivedStates) }
        current = nil
    }

    /// True when a session (current or archived) was created from this X3DH base key.
    func hasSession(withBaseKey baseKey: PublicKeyBytes) -> Bool {
        if current?.aliceBaseKey?.serialized == baseKey { return true }
        return previous.contains { $0.aliceBaseKey?.serialized == baseKey }
    }
}

typealias PublicKeyBytes = [UInt8]
