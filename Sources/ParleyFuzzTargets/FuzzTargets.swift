import ParleyCrypto
import ParleyProtocol

/// libFuzzer targets: each takes arbitrary bytes and must neither crash nor hang, and a failed
/// decryption must leave the live session exactly as it was. Shared by the `parley-fuzz`
/// executable (built with `-sanitize=fuzzer`) and by the regression tests, which replay the
/// inputs kept under `TestVectors/fuzz-regressions/`.
public enum FuzzTargets {
    public static let names = [
        "signal-message", "prekey-message", "sender-key-message", "distribution-message",
        "session-record", "sender-key-record", "session-decrypt", "group-decrypt",
    ]

    /// Runs target `name` on `data`. Traps (a fuzzer finding) if an invariant breaks.
    public static func run(_ name: String, _ data: [UInt8]) {
        switch name {
        case "signal-message": _ = try? SignalMessage(serialized: data)
        case "prekey-message": _ = try? PreKeySignalMessage(serialized: data)
        case "sender-key-message": _ = try? SenderKeyMessage(serialized: data)
        case "distribution-message": _ = try? SenderKeyDistributionMessage(serialized: data)
        case "session-record":
            if let record = try? SessionRecord(serialized: data) { _ = try? record.serialized() }
        case "sender-key-record":
            if let record = try? SenderKeyRecord(serialized: data) { _ = try? record.serialized() }
        case "session-decrypt": sessionDecrypt(data)
        case "group-decrypt": groupDecrypt(data)
        default: preconditionFailure("unknown fuzz target \(name)")
        }
    }

    // MARK: live sessions

    /// A deterministic random source, so a crashing input reproduces.
    final class SeededRandom: RandomSource {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        func draw(_ count: Int, purpose: RandomPurpose) -> [UInt8] {
            (0..<count).map { _ in
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return UInt8(truncatingIfNeeded: z ^ (z >> 31))
            }
        }
    }

    static let alice = ProtocolAddress(name: "alice", deviceId: 1)
    static let bob = ProtocolAddress(name: "bob", deviceId: 1)

    /// Bob's store with an established session with Alice (several chains, skipped keys), and
    /// Alice's pending PreKeySignalMessage bytes so the fuzzer has real structure to mutate.
    struct LiveSession {
        let bob: InMemoryProtocolStore
        let random: SeededRandom
    }

    static func makeLiveSession() -> LiveSession? {
        let random = SeededRandom(seed: 1)
        guard let aliceId = try? IdentityKeyPair.generate(using: random), let bobId = try? IdentityKeyPair.generate(using: random),
              let signed = try? SignedPreKeyRecord.generate(id: 1, identity: bobId, timestamp: 0, using: random),
              let otk = try? PrivateKey.generate(using: random)
        else { return nil }
        let a = InMemoryProtocolStore(identity: aliceId, registrationId: 1)
        let b = InMemoryProtocolStore(identity: bobId, registrationId: 2)
        b.storeSignedPreKey(signed)
        b.storePreKey(PreKeyRecord(id: 7, keyPair: otk))
        let bundle = PreKeyBundle(
            registrationId: 2, deviceId: 1, identityKey: bobId.identityKey, signedPreKeyId: 1,
            signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: 7, preKey: otk.publicKey)
        do {
            try SessionBuilder.process(bundle: bundle, for: bob, store: a, random: random)
            for i in 0..<6 {
                let m = try SessionCipher.encrypt([UInt8(i)], for: bob, store: a)
                if i % 2 == 0 {
                    if case .preKey(let p) = m { _ = try SessionCipher.decrypt(p, from: alice, store: b, random: random) }
                    if case .signal(let s) = m { _ = try SessionCipher.decrypt(s, from: alice, store: b, random: random) }
                    let r = try SessionCipher.encrypt([UInt8(i)], for: alice, store: b)
                    if case .signal(let s) = r { _ = try SessionCipher.decrypt(s, from: bob, store: a, random: random) }
                }
            }
        } catch {
            return nil
        }
        return LiveSession(bob: b, random: random)
    }

    nonisolated(unsafe) static var live: LiveSession? = makeLiveSession()

    static func sessionDecrypt(_ data: [UInt8]) {
        guard let live else { preconditionFailure("could not set up the live session") }
        let before = try? live.bob.loadSession(for: alice)?.serialized()
        let preKeysBefore = live.bob.preKeys.count
        var succeeded = false
        if let m = try? SignalMessage(serialized: data), (try? SessionCipher.decrypt(m, from: alice, store: live.bob, random: live.random)) != nil {
            succeeded = true
        }
        if let m = try? PreKeySignalMessage(serialized: data),
           (try? SessionCipher.decrypt(m, from: alice, store: live.bob, random: live.random)) != nil {
            succeeded = true
        }
        if succeeded {
            // A forgery that decrypts would be a real finding; rebuild so later inputs start clean.
            preconditionFailure("arbitrary bytes decrypted under the live session")
        }
        let after = try? live.bob.loadSession(for: alice)?.serialized()
        precondition(before == after && preKeysBefore == live.bob.preKeys.count, "a failed decrypt changed state")
    }

    static let groupName = SenderKeyName(groupId: "fuzz", sender: alice)
    nonisolated(unsafe) static var groupReceiver: InMemoryProtocolStore? = {
        let random = SeededRandom(seed: 2)
        guard let id = try? IdentityKeyPair.generate(using: random) else { return nil }
        let sender = InMemoryProtocolStore(identity: id, registrationId: 1)
        let receiver = InMemoryProtocolStore(identity: id, registrationId: 2)
        guard let skdm = try? GroupCipher.createDistributionMessage(for: groupName, store: sender, random: random),
              (try? GroupCipher.process(skdm, for: groupName, store: receiver)) != nil
        else { return nil }
        return receiver
    }()

    static func groupDecrypt(_ data: [UInt8]) {
        guard let receiver = groupReceiver else { preconditionFailure("could not set up the group") }
        let before = try? receiver.loadSenderKey(for: groupName)?.serialized()
        if let m = try? SenderKeyMessage(serialized: data), (try? GroupCipher.decrypt(m, from: groupName, store: receiver)) != nil {
            preconditionFailure("arbitrary bytes decrypted under the group key")
        }
        precondition(before == (try? receiver.loadSenderKey(for: groupName)?.serialized()), "a failed group decrypt changed state")
    }
}
