import ParleyCrypto
import ParleyProtocol

/// The state the decryption targets run against, built deterministically once: Bob after a real
/// conversation with Alice (three sessions set up, the first two answered, so his record holds a
/// current state and an archived one), a group member holding Carol's sender keys (two key
/// generations), and the genuine messages that were made but never delivered to them. The seeds
/// are those messages, so the fuzzer starts from ciphertexts that decrypt.
struct ProtocolFixture {
    /// A genuine message that was not delivered yet.
    struct Genuine {
        let label: String
        let bytes: [UInt8]
        let preKey: Bool
    }

    let alice: Party
    let bob: Party
    /// Alice's undelivered messages to Bob, each with its plaintext as label.
    let pending: [Genuine]
    /// The base keys of every session Alice started with Bob.
    let aliceBaseKeys: Set<[UInt8]>
    /// Alice's plaintexts that Bob already has (a second decryption is a replay).
    let delivered: Set<String>
    /// The messages Bob already decrypted (for replay seeds).
    let deliveredMessages: [Genuine]
    /// Bob's one-time prekey that is still unused (what a forged wrapper names).
    let liveOneTimePreKey: UInt32

    let carol: Party
    let member: Party
    let groupName: SenderKeyName
    /// Carol's undelivered group messages; the first key generation's are listed first.
    let pendingGroup: [Genuine]
    let deliveredGroup: Set<String>
    let deliveredGroupMessages: [Genuine]
    /// Carol's two distribution messages (first and second key generation).
    let distributions: [[UInt8]]

    /// Built once; never mutated afterwards (targets decrypt on copies), so concurrent readers are safe.
    nonisolated(unsafe) static let shared: ProtocolFixture? = try? make()

    static func make() throws -> ProtocolFixture {
        let alice = try Party.make(name: "alice", registrationId: 1, seed: 1, preKeyIds: 100...104)
        let bob = try Party.make(name: "bob", registrationId: 2, seed: 2, preKeyIds: 1...8)
        var pending: [Genuine] = []
        var delivered: Set<String> = []
        var deliveredMessages: [Genuine] = []
        var baseKeys: Set<[UInt8]> = []

        func send(_ text: String) throws -> CiphertextMessage {
            try SessionCipher.encrypt(Array(text.utf8), for: bob.address, store: alice.store)
        }
        func deliver(_ text: String) throws {
            let message = try send(text)
            let plaintext: [UInt8]
            switch message {
            case .preKey(let m):
                baseKeys.insert(m.baseKey.serialized)
                plaintext = try SessionCipher.decrypt(m, from: alice.address, store: bob.store, policy: Party.policy, random: bob.random)
            case .signal(let m):
                plaintext = try SessionCipher.decrypt(m, from: alice.address, store: bob.store, random: bob.random)
            }
            guard plaintext == Array(text.utf8) else { throw ProtocolError.badMAC }
            delivered.insert(text)
            deliveredMessages.append(Genuine(label: text, bytes: message.serialized, preKey: message.type == 3))
        }
        func keep(_ text: String) throws {
            let message = try send(text)
            if case .preKey(let m) = message { baseKeys.insert(m.baseKey.serialized) }
            pending.append(Genuine(label: text, bytes: message.serialized, preKey: message.type == 3))
        }
        func reply(_ text: String) throws {
            let message = try SessionCipher.encrypt(Array(text.utf8), for: alice.address, store: bob.store)
            guard case .signal(let m) = message else { throw ProtocolError.malformed("reply") }
            _ = try SessionCipher.decrypt(m, from: bob.address, store: alice.store, random: alice.random)
        }
        func startSession(preKeyId: UInt32?) throws {
            guard let bundle = bob.bundle(preKeyId: preKeyId) else { throw ProtocolError.missingPreKey(preKeyId ?? 0) }
            try SessionBuilder.process(bundle: bundle, for: bob.address, store: alice.store, policy: Party.policy, random: alice.random)
        }

        // Session 1 (one-time prekey 1): answered, then replaced by session 2, so it ends up archived
        // at Bob's with an undelivered message on its second chain.
        try startSession(preKeyId: 1)
        try deliver("s1-0")
        try keep("s1-1")  // a PreKeySignalMessage of a session Bob already has
        try reply("b-0")
        try deliver("s1-2")
        try keep("s1-3")  // decrypts only under Bob's archived state
        // Session 2 (one-time prekey 2): Bob's current session.
        try startSession(preKeyId: 2)
        try deliver("s2-0")
        try reply("b-1")
        try deliver("s2-1")
        try keep("s2-2")
        _ = try send("s2-3")  // lost: Bob keeps its key when s2-5 arrives
        _ = try send("s2-4")
        try keep("s2-5")
        // Sessions 3 (one-time prekey 3) and 4 (no one-time prekey): first messages never delivered.
        try startSession(preKeyId: 3)
        try keep("s3-0")
        try startSession(preKeyId: nil)
        try keep("s4-0")

        // Carol's sender keys at a group member: the first generation, then a rotated one.
        let carol = try Party.make(name: "carol", registrationId: 3, seed: 3, preKeyIds: 1...1)
        let member = try Party.make(name: "dave", registrationId: 4, seed: 4, preKeyIds: 1...1)
        let groupName = SenderKeyName(groupId: "fuzz-group", sender: carol.address)
        var pendingGroup: [Genuine] = []
        var deliveredGroup: Set<String> = []
        var deliveredGroupMessages: [Genuine] = []
        var distributions: [[UInt8]] = []
        func distribute() throws {
            let message = try GroupCipher.createDistributionMessage(for: groupName, store: carol.store, random: carol.random)
            try GroupCipher.process(message, for: groupName, store: member.store)
            distributions.append(message.serialized)
        }
        func groupSend(_ text: String, deliver: Bool) throws {
            let message = try GroupCipher.encrypt(Array(text.utf8), for: groupName, store: carol.store, random: carol.random)
            if deliver {
                _ = try GroupCipher.decrypt(message, from: groupName, store: member.store)
                deliveredGroup.insert(text)
                deliveredGroupMessages.append(Genuine(label: text, bytes: message.serialized, preKey: false))
            } else {
                pendingGroup.append(Genuine(label: text, bytes: message.serialized, preKey: false))
            }
        }
        try distribute()
        try groupSend("g-0", deliver: true)
        try groupSend("g-1", deliver: false)
        try groupSend("g-2", deliver: false)
        for i in 3..<10 { try groupSend("g-\(i)", deliver: false) }
        try groupSend("g-10", deliver: true)
        // Rotation: Carol drops her key and distributes a new one (a second key id at the member).
        carol.store.storeSenderKey(SenderKeyRecord(), for: groupName)
        try distribute()
        try groupSend("h-0", deliver: false)
        try groupSend("h-1", deliver: true)

        return ProtocolFixture(
            alice: alice, bob: bob, pending: pending, aliceBaseKeys: baseKeys, delivered: delivered,
            deliveredMessages: deliveredMessages, liveOneTimePreKey: 4,
            carol: carol, member: member, groupName: groupName, pendingGroup: pendingGroup, deliveredGroup: deliveredGroup,
            deliveredGroupMessages: deliveredGroupMessages, distributions: distributions)
    }

    /// The attack of issue 10's defect 1: `inner` (a genuine SignalMessage) wrapped in a
    /// PreKeySignalMessage with a fresh base key, Bob's signed prekey, a live one-time prekey and
    /// Alice's identity.
    func forgedWrapper(around inner: [UInt8], baseKeySeed: UInt64) -> [UInt8]? {
        guard let base = try? PrivateKey.generate(using: DeterministicRandom(seed: baseKeySeed)) else { return nil }
        return ProtoWriter.preKeySignalMessage(
            registrationId: 1, preKeyId: liveOneTimePreKey, signedPreKeyId: Party.signedPreKeyId,
            baseKey: base.publicKey.serialized, identityKey: alice.identityKey.serialized, message: inner)
    }

    /// Issue 10's defect 2: the same PreKeySignalMessage with bit 255 of its base key set (X25519
    /// ignores it, so X3DH derives the same secrets from a different-looking key).
    static func flippingBaseKeyBit255(_ bytes: [UInt8]) -> [UInt8]? {
        guard let message = try? PreKeySignalMessage(serialized: bytes) else { return nil }
        var key = message.baseKey.serialized
        key[32] ^= 0x80
        return ProtoWriter.preKeySignalMessage(
            registrationId: message.registrationId, preKeyId: message.preKeyId, signedPreKeyId: message.signedPreKeyId,
            baseKey: key, identityKey: message.identityKey.serialized, message: message.message.serialized)
    }
}
