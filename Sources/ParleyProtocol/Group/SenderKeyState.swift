import ParleyCrypto

/// One sender key of one member in one group: its chain, its signing key (with the private half
/// only on the sender's own device) and skipped message keys.
struct SenderKeyState: Sendable {
    var keyId: UInt32
    var chainKey: SenderChainKey
    var signingPublic: PublicKey { didSet { verifier = XEdDSA.VerifyingKey(signingPublic) } }
    var signingPrivate: PrivateKey? { didSet { signer = signingPrivate.flatMap { try? XEdDSA.SigningKey($0) } } }
    var skippedKeys: [SenderMessageKey] = []
    /// The signing key prepared for verification once, not per message.
    private(set) var verifier: XEdDSA.VerifyingKey
    /// The signing key prepared once (its Edwards public key), on the sender's own state only.
    private(set) var signer: XEdDSA.SigningKey?

    init(keyId: UInt32, chainKey: SenderChainKey, signingPublic: PublicKey, signingPrivate: PrivateKey?, skippedKeys: [SenderMessageKey] = []) {
        self.keyId = keyId
        self.chainKey = chainKey
        self.signingPublic = signingPublic
        self.signingPrivate = signingPrivate
        self.skippedKeys = skippedKeys
        self.verifier = XEdDSA.VerifyingKey(signingPublic)
        self.signer = signingPrivate.flatMap { try? XEdDSA.SigningKey($0) }
    }
}

/// Every sender-key state kept for one (group, sender), newest first, at most
/// `Limits.maxSenderKeyStates`.
public struct SenderKeyRecord: Sendable {
    var states: [SenderKeyState] = []

    public init() {}

    init(states: [SenderKeyState]) { self.states = states }

    public var isEmpty: Bool { states.isEmpty }

    func stateIndex(keyId: UInt32) -> Int? { states.firstIndex { $0.keyId == keyId } }

    mutating func add(_ state: SenderKeyState) {
        states.insert(state, at: 0)
        if states.count > Limits.maxSenderKeyStates { states.removeLast(states.count - Limits.maxSenderKeyStates) }
    }
}
