import ParleyCrypto

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

    /// Makes the session created from the X3DH base key `baseKey` current (promoting it from
    /// the archive when needed) and returns true, or returns false when there is none. Keys are
    /// compared in their canonical encodings (`PublicKey.canonicalEncoding`), so a re-encoding
    /// of a known base key finds its session rather than starting another X3DH run.
    mutating func promoteSession(withBaseKey baseKey: PublicKey) -> Bool {
        let wanted = baseKey.canonicalEncoding
        if let key = current?.aliceBaseKey, key.canonicalEncoding == wanted { return true }
        guard let index = previous.firstIndex(where: { $0.aliceBaseKey?.canonicalEncoding == wanted }) else { return false }
        let state = previous.remove(at: index)
        promote(state)
        return true
    }
}
