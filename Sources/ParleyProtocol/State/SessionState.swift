import ParleyCrypto

/// The sending half of the ratchet: our current ratchet key pair and its chain.
struct SenderChain: Sendable {
    var ratchetKey: PrivateKey
    var chainKey: ChainKey
}

/// A receiving chain: the peer's ratchet public key, the chain's next key, and the keys of
/// messages skipped on it (oldest first, at most `Limits.maxMessageKeys`).
struct ReceiverChain: Sendable {
    var ratchetKey: PublicKey
    var chainKey: ChainKey
    var skippedKeys: [MessageKeys] = []
}

/// What a session sends until the peer has answered: the X3DH parameters that make every
/// outgoing message a PreKeySignalMessage.
struct PendingPreKey: Sendable, Equatable {
    var preKeyId: UInt32?
    var signedPreKeyId: UInt32
    var baseKey: PublicKey
}

/// One Double Ratchet session with one device. A value type: operations run on a copy that
/// replaces the stored one only when they succeed.
struct SessionState: Sendable {
    var version: UInt8 = Limits.currentVersion
    var localIdentity: IdentityKey
    var remoteIdentity: IdentityKey
    var rootKey: RootKey
    var previousCounter: UInt32 = 0
    var senderChain: SenderChain
    var receiverChains: [ReceiverChain] = []
    var pendingPreKey: PendingPreKey?
    var localRegistrationId: UInt32 = 0
    var remoteRegistrationId: UInt32 = 0
    /// The initiator's base key: identifies the X3DH run that created this session.
    var aliceBaseKey: PublicKey?

    func receiverChainIndex(for key: PublicKey) -> Int? {
        receiverChains.firstIndex { $0.ratchetKey == key }
    }

    mutating func addReceiverChain(_ chain: ReceiverChain) {
        receiverChains.append(chain)
        if receiverChains.count > Limits.maxReceiverChains {
            receiverChains.removeFirst(receiverChains.count - Limits.maxReceiverChains)
        }
    }
}
