import Foundation
import ParleyCrypto
import SwiftProtobuf

/// Session and sender-key records as bytes, for persistent stores. The format is the protobuf
/// in `Proto/LocalStorage.proto`; decoding validates every key and length and reports
/// `ProtocolError.corruptState` rather than trusting the disk.
///
/// Secrets pass through swift-protobuf's `Data` fields on the way. Encoding puts each secret in
/// a `Data` whose buffer is wiped when it is released (`Data(wipingCopyOf:)`); decoding moves
/// each secret field out of the decoded message and wipes its buffer once the secret is in a
/// `SecretBytes`. The serialized bytes themselves (the result of `serialized()`, the input of
/// `init(serialized:)`) belong to the caller, which should wipe them when done (a store seals
/// them first).
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
        var proto: Parley_Storage_SessionRecordStructure
        do { proto = try Parley_Storage_SessionRecordStructure(serializedBytes: bytes) } catch {
            throw .corruptState("session record protobuf")
        }
        // Take the states out of the decoded message, so that each is the only holder of its
        // secret fields and can wipe them (see `takeSecret`).
        var currentStructure: Parley_Storage_SessionStructure? = nil
        if proto.hasCurrent {
            currentStructure = proto.current
            proto.clearCurrent()
        }
        var previousStructures = proto.previous
        proto.previous = []
        defer {
            currentStructure?.wipeSecrets()
            for i in previousStructures.indices { previousStructures[i].wipeSecrets() }
        }
        guard proto.formatVersion == Self.formatVersion else { throw .corruptState("session record format \(proto.formatVersion)") }
        guard previousStructures.count <= Limits.maxArchivedStates else { throw .corruptState("too many archived states") }
        if var structure = currentStructure {
            currentStructure = nil
            current = try SessionState(structure: &structure)
        } else {
            current = nil
        }
        var previous: [SessionState] = []
        for i in previousStructures.indices {
            var structure = previousStructures[i]
            previousStructures[i] = Parley_Storage_SessionStructure()
            previous.append(try SessionState(structure: &structure))
        }
        self.previous = previous
    }
}

extension SessionState {
    var structure: Parley_Storage_SessionStructure {
        var s = Parley_Storage_SessionStructure()
        s.sessionVersion = UInt32(version)
        s.localIdentityPublic = Data(localIdentity.serialized)
        s.remoteIdentityPublic = Data(remoteIdentity.serialized)
        s.rootKey = Data(wipingCopyOf: rootKey.key)
        s.previousCounter = previousCounter
        var sender = Parley_Storage_ChainStructure()
        sender.ratchetPublic = Data(senderChain.ratchetKey.publicKey.serialized)
        sender.ratchetPrivate = Data(wipingCopyOf: senderChain.ratchetKey.rawBytes())
        sender.chainIndex = senderChain.chainKey.index
        sender.chainKey = Data(wipingCopyOf: senderChain.chainKey.key)
        s.senderChain = sender
        s.receiverChains = receiverChains.map { chain in
            var c = Parley_Storage_ChainStructure()
            c.ratchetPublic = Data(chain.ratchetKey.serialized)
            c.chainIndex = chain.chainKey.index
            c.chainKey = Data(wipingCopyOf: chain.chainKey.key)
            c.messageKeys = chain.skippedKeys.map { keys in
                var k = Parley_Storage_ChainStructure.MessageKey()
                k.index = keys.counter
                k.cipherKey = Data(wipingCopyOf: keys.material, range: 0..<32)
                k.macKey = Data(wipingCopyOf: keys.material, range: 32..<64)
                k.iv = Data(wipingCopyOf: keys.material, range: 64..<80)
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
            if let kyber = pending.kyber {
                p.kyberPreKeyID = kyber.id
                p.kyberCiphertext = Data(kyber.ciphertext)
            }
            s.pendingPreKey = p
        }
        s.remoteRegistrationID = remoteRegistrationId
        s.localRegistrationID = localRegistrationId
        if let aliceBaseKey { s.aliceBaseKey = Data(aliceBaseKey.serialized) }
        return s
    }

    /// Builds a state from `s`, moving every secret out of it (the fields are left empty and
    /// their buffers wiped); `s` must hold the only reference to its storage.
    init(structure s: inout Parley_Storage_SessionStructure) throws(ProtocolError) {
        func key(_ d: Data, _ what: String) throws(ProtocolError) -> PublicKey {
            do { return try PublicKey(serialized: d) } catch { throw .corruptState(what) }
        }
        guard s.sessionVersion == UInt32(Limits.preKyberVersion) || s.sessionVersion == UInt32(Limits.kyberVersion) else {
            throw .corruptState("session version \(s.sessionVersion)")
        }
        let version = UInt8(s.sessionVersion)
        guard s.hasSenderChain else { throw .corruptState("no sender chain") }
        var senderStructure = s.senderChain
        s.clearSenderChain()
        var receiverStructures = s.receiverChains
        s.receiverChains = []
        defer {
            senderStructure.wipeSecrets()
            for i in receiverStructures.indices { receiverStructures[i].wipeSecrets() }
        }
        let rootKey = try takeSecret(&s, \.rootKey, count: 32, "root key")
        let ratchetPrivate: PrivateKey
        do {
            var raw = take(&senderStructure, \.ratchetPrivate)
            defer { raw.wipe() }
            ratchetPrivate = try PrivateKey(bytes: raw)
        } catch {
            throw .corruptState("sender ratchet private key")
        }
        guard ratchetPrivate.publicKey.serialized.elementsEqual(senderStructure.ratchetPublic) else {
            throw .corruptState("sender ratchet key pair mismatch")
        }
        let senderChainKey = try takeSecret(&senderStructure, \.chainKey, count: 32, "sender chain key")
        self.init(
            version: version,
            localIdentity: IdentityKey(try key(s.localIdentityPublic, "local identity")),
            remoteIdentity: IdentityKey(try key(s.remoteIdentityPublic, "remote identity")),
            rootKey: RootKey(rootKey),
            senderChain: SenderChain(
                ratchetKey: ratchetPrivate, chainKey: ChainKey(key: senderChainKey, index: senderStructure.chainIndex)))
        previousCounter = s.previousCounter
        guard receiverStructures.count <= Limits.maxReceiverChains else { throw .corruptState("too many receiver chains") }
        for i in receiverStructures.indices {
            var c = receiverStructures[i]
            receiverStructures[i] = Parley_Storage_ChainStructure()
            defer { c.wipeSecrets() }
            guard c.messageKeys.count <= Limits.maxMessageKeys else { throw .corruptState("too many skipped keys") }
            var messageKeys = c.messageKeys
            c.messageKeys = []
            defer { for j in messageKeys.indices { messageKeys[j].wipeSecrets() } }
            var skipped: [MessageKeys] = []
            skipped.reserveCapacity(messageKeys.count)
            for j in messageKeys.indices {
                var k = messageKeys[j]
                messageKeys[j] = Parley_Storage_ChainStructure.MessageKey()
                defer { k.wipeSecrets() }
                guard k.cipherKey.count == 32, k.macKey.count == 32, k.iv.count == 16 else {
                    throw .corruptState("skipped message key")
                }
                let material = SecretBytes(count: 80) { out in
                    k.cipherKey.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: out[0..<32]))
                    k.macKey.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: out[32..<64]))
                    k.iv.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: out[64..<80]))
                }
                skipped.append(MessageKeys(material: material, counter: k.index))
            }
            let chainKey = try takeSecret(&c, \.chainKey, count: 32, "receiver chain key")
            receiverChains.append(
                ReceiverChain(
                    ratchetKey: try key(c.ratchetPublic, "receiver ratchet key"),
                    chainKey: ChainKey(key: chainKey, index: c.chainIndex),
                    skippedKeys: skipped))
        }
        if s.hasPendingPreKey {
            let p = s.pendingPreKey
            // A version-4 session sends its Kyber prekey id and ciphertext until answered; a
            // version-3 one has none.
            var kyber: (id: UInt32, ciphertext: [UInt8])? = nil
            if version == Limits.kyberVersion {
                guard (try? KEMCiphertext(serialized: Array(p.kyberCiphertext))) != nil else {
                    throw .corruptState("pending Kyber ciphertext")
                }
                kyber = (p.kyberPreKeyID, Array(p.kyberCiphertext))
            } else if !p.kyberCiphertext.isEmpty || p.kyberPreKeyID != 0 {
                throw .corruptState("Kyber fields in a version-3 session")
            }
            pendingPreKey = PendingPreKey(
                preKeyId: p.hasPreKeyID_p ? p.preKeyID : nil, signedPreKeyId: p.signedPreKeyID,
                baseKey: try key(p.baseKey, "pending base key"), kyber: kyber.map { PendingPreKey.Kyber(id: $0.id, ciphertext: $0.ciphertext) })
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
            if let id = state.distributionId { s.distributionID = Data(SenderKeyLayout.bytes(id)) }
            s.chainIteration = state.chainKey.iteration
            s.chainKey = Data(wipingCopyOf: state.chainKey.key)
            s.signingPublic = Data(state.signingPublic.serialized)
            if let priv = state.signingPrivate { s.signingPrivate = Data(wipingCopyOf: priv.rawBytes()) }
            s.messageKeys = state.skippedKeys.map { key in
                var k = Parley_Storage_SenderKeyStateStructure.MessageKey()
                k.iteration = key.iteration
                k.seed = Data(wipingCopyOf: key.seed)
                return k
            }
            return s
        }
        return try proto.serializedBytes()
    }

    public init(serialized bytes: [UInt8]) throws(ProtocolError) {
        var proto: Parley_Storage_SenderKeyRecordStructure
        do { proto = try Parley_Storage_SenderKeyRecordStructure(serializedBytes: bytes) } catch {
            throw .corruptState("sender key record protobuf")
        }
        var structures = proto.states
        proto.states = []
        defer { for i in structures.indices { structures[i].wipeSecrets() } }
        guard proto.formatVersion == Self.formatVersion else { throw .corruptState("sender key format \(proto.formatVersion)") }
        guard structures.count <= Limits.maxSenderKeyStates else { throw .corruptState("too many sender key states") }
        var states: [SenderKeyState] = []
        for i in structures.indices {
            var s = structures[i]
            structures[i] = Parley_Storage_SenderKeyStateStructure()
            defer { s.wipeSecrets() }
            guard s.messageKeys.count <= Limits.maxMessageKeys else { throw .corruptState("sender chain key") }
            let chainKey = try takeSecret(&s, \.chainKey, count: 32, "sender chain key")
            let signingPublic: PublicKey
            do { signingPublic = try PublicKey(serialized: s.signingPublic) } catch { throw .corruptState("signing key") }
            var signingPrivate: PrivateKey? = nil
            if !s.signingPrivate.isEmpty {
                var raw = take(&s, \.signingPrivate)
                defer { raw.wipe() }
                do { signingPrivate = try PrivateKey(bytes: raw) } catch { throw .corruptState("signing private key") }
                guard signingPrivate?.publicKey == signingPublic else { throw .corruptState("signing key pair mismatch") }
            }
            var messageKeys = s.messageKeys
            s.messageKeys = []
            defer { for j in messageKeys.indices { messageKeys[j].wipeSecrets() } }
            var skipped: [SenderMessageKey] = []
            skipped.reserveCapacity(messageKeys.count)
            for j in messageKeys.indices {
                var k = messageKeys[j]
                messageKeys[j] = Parley_Storage_SenderKeyStateStructure.MessageKey()
                let seed = try takeSecret(&k, \.seed, count: 32, "sender message key")
                skipped.append(SenderMessageKey(seed: seed, iteration: k.iteration))
            }
            var distributionId: UUID? = nil
            if !s.distributionID.isEmpty {
                guard let id = SenderKeyLayout.uuid(s.distributionID) else { throw .corruptState("distribution id") }
                distributionId = id
            }
            states.append(
                SenderKeyState(
                    distributionId: distributionId, keyId: s.keyID, chainKey: SenderChainKey(key: chainKey, iteration: s.chainIteration),
                    signingPublic: signingPublic, signingPrivate: signingPrivate, skippedKeys: skipped))
        }
        self.states = states
    }
}

/// Moves the `Data` at `path` out of `root`, leaving an empty one: afterwards the returned value
/// is the only reference to its buffer (when `root` held the only other), so `wipe()` overwrites
/// that buffer rather than a copy.
func take<Root>(_ root: inout Root, _ path: WritableKeyPath<Root, Data>) -> Data {
    let value = root[keyPath: path]
    root[keyPath: path] = Data()
    return value
}

/// Moves a secret field out of a decoded record into a `SecretBytes` of `count` bytes and wipes
/// the field's buffer; `corruptState(what)` when the length is wrong (the buffer is wiped then too).
func takeSecret<Root>(_ root: inout Root, _ path: WritableKeyPath<Root, Data>, count: Int, _ what: String) throws(ProtocolError) -> SecretBytes {
    var data = take(&root, path)
    defer { data.wipe() }
    guard data.count == count else { throw .corruptState(what) }
    return SecretBytes(copying: data)
}

extension Data {
    /// A copy of `secret` (or of `range` of it) in a buffer that is wiped when the last `Data`
    /// referring to it is released.
    init(wipingCopyOf secret: SecretBytes, range: Range<Int>? = nil) {
        let bounds = range ?? 0..<secret.count
        let count = bounds.count
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1), alignment: 16)
        secret.withBytes { src in
            if let s = src.baseAddress, count > 0 { buffer.copyMemory(from: s + bounds.lowerBound, byteCount: count) }
        }
        self.init(bytesNoCopy: buffer, count: count, deallocator: .custom { pointer, count in
            SecretBytes.wipe(UnsafeMutableRawBufferPointer(start: pointer, count: count))
            pointer.deallocate()
        })
    }

    /// Overwrites the bytes in place (a uniquely referenced buffer is not copied first).
    mutating func wipe() {
        guard !isEmpty else { return }
        withUnsafeMutableBytes { SecretBytes.wipe($0) }
    }
}

extension Parley_Storage_ChainStructure.MessageKey {
    mutating func wipeSecrets() {
        cipherKey.wipe()
        macKey.wipe()
        iv.wipe()
    }
}

extension Parley_Storage_ChainStructure {
    /// Wipes what is left of the secrets (after an early error, or fields not taken).
    mutating func wipeSecrets() {
        ratchetPrivate.wipe()
        chainKey.wipe()
        for i in messageKeys.indices { messageKeys[i].wipeSecrets() }
    }
}

extension Parley_Storage_SessionStructure {
    /// Its fields live in a shared storage object: each is moved out first, so that the buffer
    /// wiped is the original, not a copy made on write.
    mutating func wipeSecrets() {
        var root = take(&self, \.rootKey)
        root.wipe()
        if hasSenderChain {
            var chain = senderChain
            clearSenderChain()
            chain.wipeSecrets()
        }
        var chains = receiverChains
        receiverChains = []
        for i in chains.indices { chains[i].wipeSecrets() }
    }
}

extension Parley_Storage_SenderKeyStateStructure.MessageKey {
    mutating func wipeSecrets() { seed.wipe() }
}

extension Parley_Storage_SenderKeyStateStructure {
    mutating func wipeSecrets() {
        chainKey.wipe()
        signingPrivate.wipe()
        for i in messageKeys.indices { messageKeys[i].wipeSecrets() }
    }
}
