import Foundation
import ParleyCrypto
import SwiftProtobuf

/// Session and sender-key records as bytes, for persistent stores. The format is the protobuf
/// in `Proto/LocalStorage.proto`; decoding validates every key and length and reports
/// `ProtocolError.corruptState` rather than trusting the disk.
extension SessionRecord {
    static let formatVersion: UInt32 = 1

    public func serialized() throws -> [UInt8] {
        var proto = Parley_Storage_SessionRecordStructure()
        proto.formatVersion = Self.formatVersion
        if let current { proto.current = current.structure }
        proto.previous = previous.map(\.structure)
        return try proto.serializedBytes()
    }

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        let proto: Parley_Storage_SessionRecordStructure
        do { proto = try Parley_Storage_SessionRecordStructure(serializedBytes: bytes) } catch {
            throw .corruptState("session record protobuf")
        }
        guard proto.formatVersion == Self.formatVersion else { throw .corruptState("session record format \(proto.formatVersion)") }
        current = proto.hasCurrent ? try SessionState(structure: proto.current) : nil
        var previous: [SessionState] = []
        for p in proto.previous { previous.append(try SessionState(structure: p)) }
        guard previous.count <= Limits.maxArchivedStates else { throw .corruptState("too many archived states") }
        self.previous = previous
    }
}

extension SessionState {
    var structure: Parley_Storage_SessionStructure {
        var s = Parley_Storage_SessionStructure()
        s.sessionVersion = UInt32(version)
        s.localIdentityPublic = Data(localIdentity.serialized)
        s.remoteIdentityPublic = Data(remoteIdentity.serialized)
        s.rootKey = Data(rootKey.key.copyBytes())
        s.previousCounter = previousCounter
        var sender = Parley_Storage_ChainStructure()
        sender.ratchetPublic = Data(senderChain.ratchetKey.publicKey.serialized)
        sender.ratchetPrivate = Data(senderChain.ratchetKey.rawBytes().copyBytes())
        sender.chainIndex = senderChain.chainKey.index
        sender.chainKey = Data(senderChain.chainKey.key.copyBytes())
        s.senderChain = sender
        s.receiverChains = receiverChains.map { chain in
            var c = Parley_Storage_ChainStructure()
            c.ratchetPublic = Data(chain.ratchetKey.serialized)
            c.chainIndex = chain.chainKey.index
            c.chainKey = Data(chain.chainKey.key.copyBytes())
            c.messageKeys = chain.skippedKeys.map { keys in
                var k = Parley_Storage_ChainStructure.MessageKey()
                let material = keys.material.copyBytes()
                k.index = keys.counter
                k.cipherKey = Data(material[0..<32])
                k.macKey = Data(material[32..<64])
                k.iv = Data(material[64..<80])
                return k
            }
            return c
        }
        if let pending = pendingPreKey {
            var p = Parley_Storage_PendingPreKeyStructure()
            p.hasPreKeyID_p = pending.preKeyId != nil
            p.preKeyID = pending.preKeyId ?? 0
            p.signedPreKeyID = pending.signedPreKeyId
            p.baseKey = Data(pending.baseKey.serialized)
            s.pendingPreKey = p
        }
        s.remoteRegistrationID = remoteRegistrationId
        s.localRegistrationID = localRegistrationId
        if let aliceBaseKey { s.aliceBaseKey = Data(aliceBaseKey.serialized) }
        return s
    }

    init(structure s: Parley_Storage_SessionStructure) throws(ProtocolError) {
        func key(_ d: Data, _ what: String) throws(ProtocolError) -> PublicKey {
            do { return try PublicKey(serialized: Array(d)) } catch { throw .corruptState(what) }
        }
        func secret(_ d: Data, _ count: Int, _ what: String) throws(ProtocolError) -> SecretBytes {
            guard d.count == count else { throw .corruptState(what) }
            return SecretBytes(copying: Array(d))
        }
        guard s.sessionVersion == UInt32(Limits.currentVersion) else { throw .corruptState("session version \(s.sessionVersion)") }
        guard s.hasSenderChain else { throw .corruptState("no sender chain") }
        let ratchetPrivate: PrivateKey
        do { ratchetPrivate = try PrivateKey(bytes: Array(s.senderChain.ratchetPrivate)) } catch {
            throw .corruptState("sender ratchet private key")
        }
        guard ratchetPrivate.publicKey.serialized == Array(s.senderChain.ratchetPublic) else {
            throw .corruptState("sender ratchet key pair mismatch")
        }
        self.init(
            localIdentity: IdentityKey(try key(s.localIdentityPublic, "local identity")),
            remoteIdentity: IdentityKey(try key(s.remoteIdentityPublic, "remote identity")),
            rootKey: RootKey(try secret(s.rootKey, 32, "root key")),
            senderChain: SenderChain(
                ratchetKey: ratchetPrivate,
                chainKey: ChainKey(key: try secret(s.senderChain.chainKey, 32, "sender chain key"), index: s.senderChain.chainIndex)))
        previousCounter = s.previousCounter
        guard s.receiverChains.count <= Limits.maxReceiverChains else { throw .corruptState("too many receiver chains") }
        for c in s.receiverChains {
            guard c.messageKeys.count <= Limits.maxMessageKeys else { throw .corruptState("too many skipped keys") }
            var skipped: [MessageKeys] = []
            for k in c.messageKeys {
                guard k.cipherKey.count == 32, k.macKey.count == 32, k.iv.count == 16 else {
                    throw .corruptState("skipped message key")
                }
                skipped.append(MessageKeys(material: SecretBytes(copying: Array(k.cipherKey + k.macKey + k.iv)), counter: k.index))
            }
            receiverChains.append(
                ReceiverChain(
                    ratchetKey: try key(c.ratchetPublic, "receiver ratchet key"),
                    chainKey: ChainKey(key: try secret(c.chainKey, 32, "receiver chain key"), index: c.chainIndex),
                    skippedKeys: skipped))
        }
        if s.hasPendingPreKey {
            let p = s.pendingPreKey
            pendingPreKey = PendingPreKey(
                preKeyId: p.hasPreKeyID_p ? p.preKeyID : nil, signedPreKeyId: p.signedPreKeyID,
                baseKey: try key(p.baseKey, "pending base key"))
        }
        remoteRegistrationId = s.remoteRegistrationID
        localRegistrationId = s.localRegistrationID
        aliceBaseKey = s.aliceBaseKey.isEmpty ? nil : try key(s.aliceBaseKey, "base key")
    }
}

extension SenderKeyRecord {
    static let formatVersion: UInt32 = 1

    public func serialized() throws -> [UInt8] {
        var proto = Parley_Storage_SenderKeyRecordStructure()
        proto.formatVersion = Self.formatVersion
        proto.states = states.map { state in
            var s = Parley_Storage_SenderKeyStateStructure()
            s.keyID = state.keyId
            s.chainIteration = state.chainKey.iteration
            s.chainKey = Data(state.chainKey.key.copyBytes())
            s.signingPublic = Data(state.signingPublic.serialized)
            if let priv = state.signingPrivate { s.signingPrivate = Data(priv.rawBytes().copyBytes()) }
            s.messageKeys = state.skippedKeys.map { key in
                var k = Parley_Storage_SenderKeyStateStructure.MessageKey()
                k.iteration = key.iteration
                k.seed = Data(key.seed.copyBytes())
                return k
            }
            return s
        }
        return try proto.serializedBytes()
    }

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        let proto: Parley_Storage_SenderKeyRecordStructure
        do { proto = try Parley_Storage_SenderKeyRecordStructure(serializedBytes: bytes) } catch {
            throw .corruptState("sender key record protobuf")
        }
        guard proto.formatVersion == Self.formatVersion else { throw .corruptState("sender key format \(proto.formatVersion)") }
        guard proto.states.count <= Limits.maxSenderKeyStates else { throw .corruptState("too many sender key states") }
        var states: [SenderKeyState] = []
        for s in proto.states {
            guard s.chainKey.count == 32, s.messageKeys.count <= Limits.maxMessageKeys else {
                throw .corruptState("sender chain key")
            }
            let signingPublic: PublicKey
            do { signingPublic = try PublicKey(serialized: Array(s.signingPublic)) } catch { throw .corruptState("signing key") }
            var signingPrivate: PrivateKey? = nil
            if !s.signingPrivate.isEmpty {
                do { signingPrivate = try PrivateKey(bytes: Array(s.signingPrivate)) } catch { throw .corruptState("signing private key") }
                guard signingPrivate?.publicKey == signingPublic else { throw .corruptState("signing key pair mismatch") }
            }
            var skipped: [SenderMessageKey] = []
            for k in s.messageKeys {
                guard k.seed.count == 32 else { throw .corruptState("sender message key") }
                skipped.append(SenderMessageKey(seed: SecretBytes(copying: Array(k.seed)), iteration: k.iteration))
            }
            states.append(
                SenderKeyState(
                    keyId: s.keyID, chainKey: SenderChainKey(key: SecretBytes(copying: Array(s.chainKey)), iteration: s.chainIteration),
                    signingPublic: signingPublic, signingPrivate: signingPrivate, skippedKeys: skipped))
        }
        self.states = states
    }
}
