import Foundation
import ParleyCrypto
@testable import ParleyProtocol

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let aliceAddress = ProtocolAddress(name: "alice", deviceId: 1)
let bobAddress = ProtocolAddress(name: "bob", deviceId: 1)

/// Two devices with a session set up from Bob's bundle (Alice has not sent yet): PQXDH (version
/// 4, Bob publishes a last-resort Kyber prekey, id 3) unless `postQuantum` is false, then X3DH
/// (version 3) under `SessionPolicy.allowClassical`.
struct Pair {
    let alice: InMemoryProtocolStore
    let bob: InMemoryProtocolStore
    let bobIdentity: IdentityKeyPair
    let policy: SessionPolicy

    init(oneTimePreKey: Bool = true, postQuantum: Bool = true) throws {
        alice = InMemoryProtocolStore(identity: try IdentityKeyPair.generate(), registrationId: 11)
        bobIdentity = try IdentityKeyPair.generate()
        bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 22)
        policy = postQuantum ? .requirePostQuantum : .allowClassical
        let bundle = try Pair.publish(
            bob, identity: bobIdentity, signedId: 5, preKeyId: oneTimePreKey ? 9 : nil, kyberId: postQuantum ? 3 : nil)
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice, policy: policy)
    }

    static func publish(
        _ store: InMemoryProtocolStore, identity: IdentityKeyPair, signedId: UInt32, preKeyId: UInt32?, kyberId: UInt32? = nil,
        kyberLastResort: Bool = true
    ) throws -> PreKeyBundle {
        let signed = try SignedPreKeyRecord.generate(id: signedId, identity: identity, timestamp: 0)
        store.storeSignedPreKey(signed)
        var preKey: PreKeyRecord? = nil
        if let preKeyId {
            preKey = PreKeyRecord(id: preKeyId, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
            store.storePreKey(preKey!)
        }
        var kyber: PreKeyBundle.KyberPreKey? = nil
        if let kyberId {
            let record = try KyberPreKeyRecord.generate(id: kyberId, identity: identity, timestamp: 0, lastResort: kyberLastResort)
            store.storeKyberPreKey(record)
            kyber = PreKeyBundle.KyberPreKey(id: kyberId, publicKey: record.keyPair.publicKey, signature: record.signature)
        }
        return PreKeyBundle(
            registrationId: store.localRegistrationId(), deviceId: 1, identityKey: identity.identityKey,
            signedPreKeyId: signedId, signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature,
            preKeyId: preKey?.id, preKey: preKey?.keyPair.publicKey, kyberPreKey: kyber)
    }

    func send(_ text: String, from sender: ProtocolAddress) throws -> CiphertextMessage {
        sender == aliceAddress
            ? try SessionCipher.encrypt(Array(text.utf8), for: bobAddress, store: alice)
            : try SessionCipher.encrypt(Array(text.utf8), for: aliceAddress, store: bob)
    }

    @discardableResult
    func receive(_ message: CiphertextMessage, by receiver: ProtocolAddress) throws -> String {
        let store = receiver == aliceAddress ? alice : bob
        let from = receiver == aliceAddress ? bobAddress : aliceAddress
        let plaintext = try Pair.decrypt(message.serialized, type: message.type, from: from, store: store, policy: policy)
        return String(decoding: plaintext, as: UTF8.self)
    }

    static func decrypt(
        _ bytes: [UInt8], type: Int, from: ProtocolAddress, store: InMemoryProtocolStore, policy: SessionPolicy = .default
    ) throws -> [UInt8] {
        if type == 3 {
            return try SessionCipher.decrypt(try PreKeySignalMessage(serialized: bytes), from: from, store: store, policy: policy)
        }
        return try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: from, store: store)
    }

    /// Establishes the session both ways.
    func handshake() throws {
        try receive(try send("hello", from: aliceAddress), by: bobAddress)
        try receive(try send("hi", from: bobAddress), by: aliceAddress)
    }
}

/// Everything a failed operation must leave untouched.
func snapshot(_ store: InMemoryProtocolStore) throws -> [String] {
    var out: [String] = []
    for (a, r) in store.sessions.sorted(by: { $0.key.description < $1.key.description }) {
        out.append("\(a) \(try r.serialized().hexString)")
    }
    out += store.preKeys.keys.sorted().map { "prekey \($0)" }
    out += store.kyberPreKeys.keys.sorted().map { "kyber prekey \($0)" }
    out += store.kyberPreKeyUses.map { "kyber use \($0.kyberPreKeyId) \($0.signedPreKeyId) \($0.baseKey.serialized.hexString)" }.sorted()
    out += store.identities.sorted(by: { $0.key.description < $1.key.description }).map { "id \($0.key) \($0.value.serialized.hexString)" }
    for (n, r) in store.senderKeys.sorted(by: { $0.key.description < $1.key.description }) {
        out.append("sk \(n) \(try r.serialized().hexString)")
    }
    return out
}

/// A deterministic generator for property tests (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
