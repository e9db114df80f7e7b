import ParleyCrypto

import Foundation

/// One sender key of one member in one group: its chain, its signing key (with the private half
/// only on the sender's own device) and skipped message keys. A state in libsignal's current
/// layout carries its distribution id; one in the old layout has none (`SenderKeyLayout`).
struct SenderKeyState: Sendable {
    /// The distribution (current layout), nil for the old layout.
    var distributionId: UUID?
    /// The chain id (current layout) or key id (old layout).
    var keyId: UInt32
    var chainKey: SenderChainKey
    var signingPublic: PublicKey { didSet { verifier = XEdDSA.VerifyingKey(signingPublic) } }
    var signingPrivate: PrivateKey? { didSet { signer = signingPrivate.flatMap { try? XEdDSA.SigningKey($0) } } }
    var skippedKeys: [SenderMessageKey] = []
    /// The signing key prepared for verification once, not per message.
    private(set) var verifier: XEdDSA.VerifyingKey
    /// The signing key prepared once (its Edwards public key), on the sender's own state only.
    private(set) var signer: XEdDSA.SigningKey?

    init(
        distributionId: UUID?, keyId: UInt32, chainKey: SenderChainKey, signingPublic: PublicKey, signingPrivate: PrivateKey?,
        skippedKeys: [SenderMessageKey] = []
    ) {
        self.distributionId = distributionId
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

    /// The state a message names: same layout, same distribution id, same chain (key) id.
    func stateIndex(distributionId: UUID?, keyId: UInt32) -> Int? {
        states.firstIndex { $0.distributionId == distributionId && $0.keyId == keyId }
    }

    mutating func add(_ state: SenderKeyState) {
        states.insert(state, at: 0)
        if states.count > Limits.maxSenderKeyStates { states.removeLast(states.count - Limits.maxSenderKeyStates) }
    }
}
