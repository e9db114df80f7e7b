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

/// What a session sends until the peer has answered: the X3DH / PQXDH parameters that make
/// every outgoing message a PreKeySignalMessage.
struct PendingPreKey: Sendable, Equatable {
    /// A version-4 session's Kyber prekey id and the ciphertext encapsulated to it, repeated in
    /// every PreKeySignalMessage until the first reply.
    struct Kyber: Sendable, Equatable {
        var id: UInt32
        var ciphertext: [UInt8]
    }

    var preKeyId: UInt32?
    var signedPreKeyId: UInt32
    var baseKey: PublicKey
    var kyber: Kyber? = nil
}

/// One Double Ratchet session with one device. A value type: operations run on a copy that
/// replaces the stored one only when they succeed.
///
/// What changes with every message (the sending chain key, the receiving chains) is stored
/// inline; everything else lives in one copy-on-write box. Copying a state (into and out of
/// records and stores, several times per message) is then a few reference-count operations, and
/// advancing a chain never copies the box: encrypting replaces one `ChainKey`, decrypting copies
/// only the (at most `Limits.maxReceiverChains`) receiving chains when they are shared.
struct SessionState: Sendable {
    final class Storage: @unchecked Sendable {
        var version: UInt8
        var localIdentity: IdentityKey
        var remoteIdentity: IdentityKey
        var rootKey: RootKey
        var previousCounter: UInt32
        var senderRatchetKey: PrivateKey
        var pendingPreKey: PendingPreKey?
        var localRegistrationId: UInt32
        var remoteRegistrationId: UInt32
        var aliceBaseKey: PublicKey?

        init(
            version: UInt8, localIdentity: IdentityKey, remoteIdentity: IdentityKey, rootKey: RootKey,
            previousCounter: UInt32, senderRatchetKey: PrivateKey, pendingPreKey: PendingPreKey?,
            localRegistrationId: UInt32, remoteRegistrationId: UInt32, aliceBaseKey: PublicKey?
        ) {
            self.version = version
            self.localIdentity = localIdentity
            self.remoteIdentity = remoteIdentity
            self.rootKey = rootKey
            self.previousCounter = previousCounter
            self.senderRatchetKey = senderRatchetKey
            self.pendingPreKey = pendingPreKey
            self.localRegistrationId = localRegistrationId
            self.remoteRegistrationId = remoteRegistrationId
            self.aliceBaseKey = aliceBaseKey
        }

        func copy() -> Storage {
            Storage(
                version: version, localIdentity: localIdentity, remoteIdentity: remoteIdentity, rootKey: rootKey,
                previousCounter: previousCounter, senderRatchetKey: senderRatchetKey, pendingPreKey: pendingPreKey,
                localRegistrationId: localRegistrationId, remoteRegistrationId: remoteRegistrationId,
                aliceBaseKey: aliceBaseKey)
        }
    }

    private var storage: Storage
    /// The sending chain's next key (its ratchet key pair is in `storage`).
    var senderChainKey: ChainKey
    /// The receiving chains, oldest first.
    var receiverChains: [ReceiverChain] = []

    init(version: UInt8, localIdentity: IdentityKey, remoteIdentity: IdentityKey, rootKey: RootKey, senderChain: SenderChain) {
        storage = Storage(
            version: version, localIdentity: localIdentity, remoteIdentity: remoteIdentity, rootKey: rootKey,
            previousCounter: 0, senderRatchetKey: senderChain.ratchetKey, pendingPreKey: nil,
            localRegistrationId: 0, remoteRegistrationId: 0, aliceBaseKey: nil)
        senderChainKey = senderChain.chainKey
    }

    private mutating func unique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    var version: UInt8 {
        get { storage.version }
        set { unique(); storage.version = newValue }
    }
    var localIdentity: IdentityKey {
        get { storage.localIdentity }
        set { unique(); storage.localIdentity = newValue }
    }
    var remoteIdentity: IdentityKey {
        get { storage.remoteIdentity }
        set { unique(); storage.remoteIdentity = newValue }
    }
    var rootKey: RootKey {
        get { storage.rootKey }
        set { unique(); storage.rootKey = newValue }
    }
    var previousCounter: UInt32 {
        get { storage.previousCounter }
        set { unique(); storage.previousCounter = newValue }
    }
    /// Our current ratchet key pair.
    var senderRatchetKey: PrivateKey { storage.senderRatchetKey }
    /// Our current ratchet key pair and the sending chain's next key.
    var senderChain: SenderChain {
        get { SenderChain(ratchetKey: storage.senderRatchetKey, chainKey: senderChainKey) }
        set {
            unique()
            storage.senderRatchetKey = newValue.ratchetKey
            senderChainKey = newValue.chainKey
        }
    }
    var pendingPreKey: PendingPreKey? {
        get { storage.pendingPreKey }
        set { unique(); storage.pendingPreKey = newValue }
    }
    var localRegistrationId: UInt32 {
        get { storage.localRegistrationId }
        set { unique(); storage.localRegistrationId = newValue }
    }
    var remoteRegistrationId: UInt32 {
        get { storage.remoteRegistrationId }
        set { unique(); storage.remoteRegistrationId = newValue }
    }
    /// The initiator's base key: identifies the X3DH run that created this session.
    var aliceBaseKey: PublicKey? {
        get { storage.aliceBaseKey }
        set { unique(); storage.aliceBaseKey = newValue }
    }

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
