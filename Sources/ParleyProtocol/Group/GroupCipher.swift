import Foundation
import ParleyCrypto

/// Sender keys: one chain per member per group, handed to the other members once, then one
/// signed ciphertext per group message whatever the group's size.
///
/// New sender keys use libsignal's current layout (a distribution UUID and a chain id,
/// `createDistributionMessage(for:distributionId:)`); the old layout (a key id only) is still
/// created on request and always read, for interop with python-axolotl and libsignal-java.
/// Every state keeps its layout: messages are sent in the layout of the state they come from.
public enum GroupCipher {
    /// The sender's distribution message for `name` (its own address in a group) in
    /// libsignal's current layout, creating the sender key with `distributionId` when the record
    /// has no own key yet: draws 4 bytes (the chain id is their little-endian value shifted right
    /// by one, libsignal's `random::<u32>() >> 1`), the 32-byte chain key and the signing key
    /// pair, in that order. An existing own key is described as it is (its layout and
    /// distribution id included: a group keeps its sender key until it is rotated).
    public static func createDistributionMessage<S: SenderKeyStore>(
        for name: SenderKeyName, distributionId: UUID, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> SenderKeyDistributionMessage {
        try createDistributionMessage(for: name, newKeyDistributionId: distributionId, store: store, random: random)
    }

    /// The sender's distribution message for `name` in the old layout (python-axolotl,
    /// libsignal-java), creating the sender key on first use: draws 4 bytes (the key id is their
    /// little-endian value with the top bit cleared), the 32-byte chain seed and the signing key
    /// pair, in that order. Later calls describe the current chain position.
    public static func createDistributionMessage<S: SenderKeyStore>(
        for name: SenderKeyName, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> SenderKeyDistributionMessage {
        try createDistributionMessage(for: name, newKeyDistributionId: nil, store: store, random: random)
    }

    private static func createDistributionMessage<S: SenderKeyStore>(
        for name: SenderKeyName, newKeyDistributionId distributionId: UUID?, store: S, random: any RandomSource
    ) throws -> SenderKeyDistributionMessage {
        var record = try store.loadSenderKey(for: name) ?? SenderKeyRecord()
        if record.states.first?.signingPrivate == nil {
            let idBytes = random.draw(4, purpose: .senderKeyId)
            let raw = idBytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            // Both are 31-bit: libsignal-java's ids are Java ints; libsignal keeps that range.
            let keyId = distributionId == nil ? raw & 0x7FFF_FFFF : raw >> 1
            var seedDraw = random.draw(32, purpose: .senderChainSeed)
            let seed = SecretBytes(copying: seedDraw)
            seedDraw.withUnsafeMutableBytes { SecretBytes.wipe($0) }
            let signing = try PrivateKey.generate(using: random)
            record.add(
                SenderKeyState(
                    distributionId: distributionId, keyId: keyId, chainKey: SenderChainKey(key: seed, iteration: 0),
                    signingPublic: signing.publicKey, signingPrivate: signing))
            try store.storeSenderKey(record, for: name)
        }
        guard let state = record.states.first else { throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: nil) }
        return try SenderKeyDistributionMessage(
            distributionId: state.distributionId, chainId: state.keyId, iteration: state.chainKey.iteration,
            chainKey: state.chainKey.key.copyBytes(), signingKey: state.signingPublic)
    }

    /// Installs a member's sender key from its distribution message, as libsignal's
    /// `add_sender_key_state` does: a state with the same distribution id (or none, in the old
    /// layout), chain id and signing key is kept as it is (a replayed distribution message must
    /// not rewind the chain) but moved to the front, so the chain the sender is using is the last
    /// to be evicted; states with the same distribution and chain id but another signing key are
    /// removed; otherwise a new state goes in front. At most `Limits.maxSenderKeyStates` are
    /// kept, the oldest dropped.
    public static func process<S: SenderKeyStore>(
        _ message: SenderKeyDistributionMessage, for name: SenderKeyName, store: S
    ) throws {
        var record = try store.loadSenderKey(for: name) ?? SenderKeyRecord()
        func same(_ state: SenderKeyState) -> Bool {
            state.distributionId == message.distributionId && state.keyId == message.chainId
        }
        let known = record.states.first { same($0) && $0.signingPublic == message.signingKey }
        record.states.removeAll(where: same)
        record.add(
            known
                ?? SenderKeyState(
                    distributionId: message.distributionId, keyId: message.chainId,
                    chainKey: SenderChainKey(key: SecretBytes(copying: message.chainKey), iteration: message.iteration),
                    signingPublic: message.signingKey, signingPrivate: nil))
        try store.storeSenderKey(record, for: name)
    }

    /// Encrypts a group message under the sender's own newest sender key, in that key's layout;
    /// draws the 64-byte signature randomness.
    public static func encrypt<S: SenderKeyStore>(
        _ plaintext: [UInt8], for name: SenderKeyName, store: S, random: any RandomSource = SystemRandom.shared
    ) throws -> SenderKeyMessage {
        guard var record = try store.loadSenderKey(for: name), var state = record.states.first,
              let signing = state.signer
        else { throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: nil) }
        let (messageKey, next) = try state.chainKey.step()
        let body = try messageKey.withKeyAndIV { (key, iv) throws(ProtocolError) -> [UInt8] in
            do { return try AES256CBC.encrypt(plaintext, key: key, iv: iv) } catch { throw .crypto((error as? CryptoError) ?? .cipherFailure) }
        }
        let message = try SenderKeyMessage(
            distributionId: state.distributionId, chainId: state.keyId, iteration: messageKey.iteration, ciphertext: body,
            signingKey: signing, random: random)
        state.chainKey = next
        record.states[0] = state
        try store.storeSenderKey(record, for: name)
        return message
    }

    /// Decrypts a group message from `name.sender`. The state is the one with the message's
    /// distribution id and chain id (`unknownDistribution` when there is none; `noSenderKey` for
    /// an old-layout message without a state of its key id). The signature is checked before the
    /// iteration, so a forged replay reports `badSignature`, a genuine one `duplicateMessage`.
    public static func decrypt<S: SenderKeyStore>(
        _ message: SenderKeyMessage, from name: SenderKeyName, store: S
    ) throws -> [UInt8] {
        guard var record = try store.loadSenderKey(for: name),
              let index = record.stateIndex(distributionId: message.distributionId, keyId: message.chainId)
        else {
            if let distributionId = message.distributionId {
                throw ProtocolError.unknownDistribution(distributionId: distributionId, chainId: message.chainId)
            }
            throw ProtocolError.noSenderKey(groupId: name.groupId, keyId: message.keyId)
        }
        var state = record.states[index]
        guard message.verifySignature(state.verifier) else { throw ProtocolError.badSignature }
        let key = try messageKey(state: &state, iteration: message.iteration)
        let plaintext = try key.withKeyAndIV { (k, iv) throws(ProtocolError) -> [UInt8] in
            do { return try AES256CBC.decrypt(message.ciphertext, key: k, iv: iv) } catch { throw .invalidCiphertext }
        }
        record.states[index] = state
        try store.storeSenderKey(record, for: name)
        return plaintext
    }

    static func messageKey(state: inout SenderKeyState, iteration: UInt32) throws(ProtocolError) -> SenderMessageKey {
        try SkippedKeyWalk.messageKey(
            chain: &state.chainKey, skipped: &state.skippedKeys, at: iteration, maxForwardJumps: Limits.maxSenderKeyForwardJumps)
    }
}
