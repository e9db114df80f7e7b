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

    /// Makes the session of `version` created from the base key `baseKey` current (promoting it
    /// from the archive when needed) and returns true, or returns false when there is none, as
    /// libsignal's `promote_matching_session`: the version and the 33-byte key must be equal. A
    /// re-encoding of a known base key therefore finds no session, and a new one is refused
    /// because its base key is not canonical (`invalidBaseKey`).
    mutating func promoteSession(version: UInt8, baseKey: PublicKey) -> Bool {
        func matches(_ state: SessionState) -> Bool { state.version == version && state.aliceBaseKey == baseKey }
        if let current, matches(current) { return true }
        guard let index = previous.firstIndex(where: matches) else { return false }
        let state = previous.remove(at: index)
        promote(state)
        return true
    }

    /// The message version of the current session (3 or 4), nil without one.
    public var currentVersion: UInt8? { current?.version }
}
