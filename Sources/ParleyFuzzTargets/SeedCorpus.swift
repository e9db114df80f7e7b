import Foundation
import ParleyCrypto
import ParleyFormats
import ParleyProtocol
import ParleyWire

/// One committed input of a target with the outcome it must have.
public struct FuzzSeed: Sendable {
    public let target: String
    /// File name under `TestVectors/fuzz-regressions/<target>/`.
    public let file: String
    public let bytes: [UInt8]
    /// The outcome as written in the manifest (`FuzzOutcome.matches`).
    public let expected: String
    /// Set when the expected outcome needs a fix that is not in this tree yet: the regression test
    /// then expects the failure as a known issue (and fails once the fix makes it pass, so the
    /// marker is removed).
    public let knownIssue: String?
}

/// The seed corpus: inputs made deterministically from the targets' own fixtures (messages under
/// the harness's keys, sessions with archived states, known sender keys), so that the fuzzers
/// start deep inside the code instead of at the first parse error. `parley-fuzz make-seeds DIR`
/// writes them; the regression tests check that the committed files are exactly these.
public enum SeedCorpus {
    public static func make() throws -> [FuzzSeed] {
        var seeds: [FuzzSeed] = []
        func add(_ target: String, _ name: String, _ bytes: [UInt8], _ expected: String, knownIssue: String? = nil) {
            seeds.append(FuzzSeed(target: target, file: "seed-\(name).bin", bytes: bytes, expected: expected, knownIssue: knownIssue))
        }
        guard let fixture = ProtocolFixture.shared else { throw ProtocolError.corruptState("fixture") }

        // Pairwise messages under the harness's keys: Bob's pending messages from Alice, a replay,
        // a tampered MAC, the forged wrapper of defect 1 and the non-canonical base key of defect 2.
        for message in fixture.pending {
            add(message.preKey ? "prekey-message" : "signal-message", message.label, message.bytes, "accepted")
            add("session-decrypt", message.label, message.bytes, "accepted \(message.label)")
        }
        if let replay = fixture.deliveredMessages.last {
            add("session-decrypt", "replay-\(replay.label)", replay.bytes, "rejected duplicate")
        }
        if let target = fixture.pending.first(where: { $0.label == "s2-2" }) {
            var tampered = target.bytes
            tampered[tampered.count - 1] ^= 0x01
            add("session-decrypt", "bad-mac-s2-2", tampered, "rejected bad_mac")
            add("signal-message", "legacy-version", [0x22] + target.bytes.dropFirst(), "rejected bad_version")
            // 0x44 is version 4 (PQXDH), current since issue 14: 0x55 is a version from the future.
            add("signal-message", "future-version", [0x55] + target.bytes.dropFirst(), "rejected bad_version")
            add("signal-message", "truncated", Array(target.bytes.prefix(12)), "rejected truncated")
        }
        if let archived = fixture.pending.first(where: { $0.label == "s1-3" }),
            let forged = fixture.forgedWrapper(around: archived.bytes, baseKeySeed: 0xF0)
        {
            add("prekey-message", "forged-wrapper-s1-3", forged, "accepted")
            add("session-decrypt", "forged-wrapper-s1-3", forged, "rejected")
        }
        if let noOneTime = fixture.pending.first(where: { $0.label == "s4-0" }),
            let flipped = ProtocolFixture.flippingBaseKeyBit255(noOneTime.bytes)
        {
            add("session-decrypt", "base-key-bit255-s4-0", flipped, "rejected")
        }
        if let bob = try? fixture.bob.store.loadSession(for: fixture.alice.address)?.serialized() {
            add("session-record", "bob-current-and-archived", bob, "accepted current")
        }
        if let alice = try? fixture.alice.store.loadSession(for: fixture.bob.address)?.serialized() {
            add("session-record", "alice-four-sessions", alice, "accepted current")
        }
        if var archivedOnly = fixture.bob.store.loadSession(for: fixture.alice.address) {
            archivedOnly.archiveCurrentState()
            if let bytes = try? archivedOnly.serialized() { add("session-record", "archived-only", bytes, "accepted no-current") }
        }

        // Group: the member's pending messages from Carol under both key generations, a replay,
        // a broken signature, the distribution messages and both records.
        for message in fixture.pendingGroup where ["g-1", "g-2", "g-5", "g-9", "h-0"].contains(message.label) {
            add("sender-key-message", message.label, message.bytes, "accepted")
            add("group-decrypt", message.label, message.bytes, "accepted \(message.label)")
        }
        if let replay = fixture.deliveredGroupMessages.first {
            add("group-decrypt", "replay-\(replay.label)", replay.bytes, "rejected duplicate")
            var forged = replay.bytes
            forged[forged.count - 1] ^= 0x01
            add("group-decrypt", "bad-signature", forged, "rejected bad_signature")
        }
        for (index, distribution) in fixture.distributions.enumerated() {
            add("distribution-message", "generation-\(index + 1)", distribution, "accepted")
        }
        if let member = try? fixture.member.store.loadSenderKey(for: fixture.groupName)?.serialized() {
            add("sender-key-record", "member-two-generations", member, "accepted keys=2")
        }
        if let own = try? fixture.carol.store.loadSenderKey(for: fixture.groupName)?.serialized() {
            add("sender-key-record", "sender-own-key", own, "accepted keys=1")
        }

        // A live conversation's programs (RatchetTranscriptTarget.Operation values and their arguments).
        for (name, program, expected, issue) in transcriptPrograms() {
            add("ratchet-transcript", name, program, expected, knownIssue: issue)
        }

        try addVersionFourSeeds(add)
        try addClientFormatSeeds(add)
        try addWireSeeds(add)
        return seeds
    }

    // MARK: version 4

    /// Version 4 (PQXDH) messages and libsignal's current Sender Key layout, for the parsers: a
    /// PreKeySignalMessage and a SignalMessage at 0x44 (Kyber ciphertext in field 8) from a session
    /// made with a Kyber prekey, and a distribution message and SenderKeyMessage carrying a
    /// distribution id. Made under a deterministic random source of their own.
    static func addVersionFourSeeds(_ add: (String, String, [UInt8], String, String?) -> Void) throws {
        let random = DeterministicRandom(seed: 44)
        let aliceIdentity = try IdentityKeyPair.generate(using: random)
        let bobIdentity = try IdentityKeyPair.generate(using: random)
        let alice = InMemoryProtocolStore(identity: aliceIdentity, registrationId: 41)
        let bob = InMemoryProtocolStore(identity: bobIdentity, registrationId: 42)
        let aliceAddress = ProtocolAddress(name: "alice-v4", deviceId: 1)
        let bobAddress = ProtocolAddress(name: "bob-v4", deviceId: 1)
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: bobIdentity, timestamp: 0, using: random)
        let kyber = try KyberPreKeyRecord.generate(id: 2, identity: bobIdentity, timestamp: 0, lastResort: true, using: random)
        bob.storeSignedPreKey(signed)
        bob.storeKyberPreKey(kyber)
        let bundle = PreKeyBundle(
            registrationId: 42, deviceId: 1, identityKey: bobIdentity.identityKey, signedPreKeyId: signed.id,
            signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature, preKeyId: nil, preKey: nil,
            kyberPreKey: PreKeyBundle.KyberPreKey(id: kyber.id, publicKey: kyber.keyPair.publicKey, signature: kyber.signature))
        try SessionBuilder.process(bundle: bundle, for: bobAddress, store: alice, random: random)
        guard case .preKey(let first) = try SessionCipher.encrypt(Array("v4 first".utf8), for: bobAddress, store: alice) else {
            throw ProtocolError.corruptState("version-4 seed: no PreKeySignalMessage")
        }
        _ = try SessionCipher.decrypt(first, from: aliceAddress, store: bob, random: random)
        guard case .signal(let reply) = try SessionCipher.encrypt(Array("v4 reply".utf8), for: aliceAddress, store: bob) else {
            throw ProtocolError.corruptState("version-4 seed: no SignalMessage")
        }
        add("prekey-message", "v4-first", first.serialized, "accepted", nil)
        add("signal-message", "v4-reply", reply.serialized, "accepted", nil)

        let name = SenderKeyName(groupId: "fuzz-group-v4", sender: aliceAddress)
        let distributionId = UUID(uuid: (0x44, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x04))
        let distribution = try GroupCipher.createDistributionMessage(
            for: name, distributionId: distributionId, store: alice, random: random)
        let message = try GroupCipher.encrypt(Array("v4 group".utf8), for: name, store: alice, random: random)
        add("distribution-message", "current-layout", distribution.serialized, "accepted", nil)
        add("sender-key-message", "current-layout", message.serialized, "accepted", nil)
    }

    // MARK: ratchet transcripts

    static func transcriptPrograms() -> [(String, [UInt8], String, String?)] {
        typealias Op = RatchetTranscriptTarget.Operation
        func program(_ steps: [[UInt8]]) -> [UInt8] { steps.flatMap { $0 } }
        let a = [Op.aliceSends.rawValue], b = [Op.bobSends.rawValue]
        func deliver(_ index: UInt8) -> [UInt8] { [Op.deliver.rawValue, index] }
        func all(_ sender: UInt8) -> [UInt8] { [Op.deliverAllInOrder.rawValue, sender] }
        return [
            ("conversation", program([a, a, a, all(0), b, b, all(1), a, a, all(0), b, all(1)]),
             "accepted sent=8 decrypted=8 rejected=0", nil),
            ("reorder-and-duplicates",
             program([a, a, a, a, deliver(2), deliver(0), deliver(3), deliver(1), deliver(1), b, deliver(4), a, a, deliver(6),
                      deliver(5), deliver(5)]),
             "accepted sent=7 decrypted=7 rejected=2", nil),
            ("mutations",
             program([a, [Op.deliverFlipped.rawValue, 0, 0, 200], [Op.deliverTruncated.rawValue, 0, 0, 20], deliver(0), b,
                      [Op.deliverSpliced.rawValue, 1, 0, 0, 30], deliver(1), a, [Op.deliverFlipped.rawValue, 2, 0, 5], deliver(2)]),
             "accepted sent=3 decrypted=3 rejected=4", nil),
            // Defect 1: A2 is left undelivered on session 1, Alice starts session 2, Bob archives session 1 when
            // A3 arrives; a forged wrapper around A2 must not decrypt; A2 itself still does.
            ("forged-wrapper-archived-session",
             program([a, all(0), b, all(1), a, [Op.newSession.rawValue, 0, 0], a, deliver(3),
                      [Op.deliverForgedWrapper.rawValue, 2, 0, 0, 7], deliver(2)]),
             "accepted sent=4 decrypted=4 rejected=1", nil),
            // Defect 2: a session without a one-time prekey (Bob has 16 live, so choice 16 is "none"); the
            // first message replayed with bit 255 of its base key set must not decrypt again.
            ("non-canonical-base-key",
             program([[Op.newSession.rawValue, 0, 16], a, deliver(0), [Op.deliverNonCanonicalBaseKey.rawValue, 0]]),
             "accepted sent=1 decrypted=1 rejected=1", nil),
            // Both start a session at once (Bob from Alice's bundle while her first message is in flight).
            ("simultaneous-initiation",
             program([a, [Op.newSession.rawValue, 1, 0], b, all(0), all(1), a, b, all(0), all(1)]),
             "accepted sent=4 decrypted=4 rejected=0", nil),
        ]
    }

    // MARK: client formats

    static func addClientFormatSeeds(_ add: (String, String, [UInt8], String, String?) -> Void) throws {
        let random = DeterministicRandom(seed: 31)
        if let numbers = ClientFormatTargets.SafetyNumbers.shared {
            add("safety-number", "bob-code", numbers.bobAlice.scannable, "accepted matches bob", nil)
            add("safety-number", "carol-code", numbers.carolAlice.scannable, "accepted matches carol", nil)
            add("safety-number", "own-code", numbers.aliceBob.scannable, "accepted no match", nil)
            add("safety-number", "truncated", Array(numbers.bobAlice.scannable.dropLast(5)), "rejected truncated", nil)
        }

        let linkKey = try PrivateKey.generate(using: random).publicKey
        let code = Base64URL.encode(random.draw(16, purpose: .other))
        let link = LinkString(code: code, ephemeralPublicKey: linkKey).text
        add("link-string", "valid", Array(link.utf8), "accepted", nil)
        add("link-string", "surrounded-by-whitespace", Array(" \(link)\n".utf8), "accepted", nil)
        add("link-string", "other-scheme", Array(link.replacingOccurrences(of: "parley-link", with: "parley-lynx").utf8),
            "rejected malformedLinkString", nil)

        let identity = try IdentityKeyPair.generate(using: random)
        let peer = try IdentityKeyPair.generate(using: random).identityKey
        let archive = HistoryArchive(
            conversations: [
                ArchivedConversation(kind: .direct(peer: "bob"), title: nil, createdAt: 1_700_000_000_000),
                ArchivedConversation(kind: .group(groupId: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), title: "trip", createdAt: 1_700_000_100_000),
            ],
            messages: [
                ArchivedMessage(
                    conversation: 1, serverId: UUID(uuidString: "01890A5D-AC96-774B-BCCE-B302099A8057"), sender: ProtocolAddress(name: "bob", deviceId: 2),
                    outgoing: false, sentAt: 1_700_000_200_000, receivedAt: 1_700_000_200_500, sortAt: 1_700_000_200_500,
                    body: "see you there", couldNotDecrypt: false, statuses: ["alice": .read],
                    messageUid: "6f9619ff-8b86-d011-b42d-00cf4fc964ff"),
                ArchivedMessage(
                    conversation: 0, serverId: nil, sender: ProtocolAddress(name: "alice", deviceId: 1), outgoing: true,
                    sentAt: 1_700_000_150_000, receivedAt: nil, sortAt: 1_700_000_150_000, body: "héllo", couldNotDecrypt: false,
                    statuses: ["bob": .delivered]),
                ArchivedMessage(
                    conversation: 0, serverId: UUID(uuidString: "01890A5D-AC96-774B-BCCE-B302099A8058"), sender: ProtocolAddress(name: "bob", deviceId: 1),
                    outgoing: false, sentAt: nil, receivedAt: 1_700_000_140_000, sortAt: 1_700_000_140_000, body: nil,
                    couldNotDecrypt: true, statuses: [:]),
            ])
        let payload = ProvisioningPayload(
            accountName: "alice", identity: identity, existingDeviceId: 1,
            contacts: [
                ArchivedContact(account: "bob", displayName: "Bob", createdAt: 1_700_000_000_000),
                ArchivedContact(account: "carol", displayName: nil, createdAt: 1_700_000_050_000),
            ],
            identities: [ArchivedIdentity(address: ProtocolAddress(name: "bob", deviceId: 1), identityKey: peer, verified: true, firstSeen: 1_700_000_000_000)],
            archive: archive)
        let encoded = try payload.encode().bytes.copyBytes()
        add("provisioning-payload", "two-contacts-history", encoded, "accepted contacts=2 identities=1 conversations=2 messages=3", nil)
        var newer = encoded
        newer[4] = 3
        add("provisioning-payload", "version-3", newer, "rejected unsupportedPayloadVersion", nil)
        // Version 2: the history travels as a separate upload; the payload carries its header.
        var withUpload = payload
        withUpload.archive = HistoryArchive()
        withUpload.historyUpload = HistoryUploadHeader(
            messageCount: 3, plaintextBytes: UInt64(try archive.encoded().count), chunkBytes: 65_536, digest: Array(repeating: 0xAB, count: 32))
        add(
            "provisioning-payload", "version-2-history-upload", try withUpload.encode().bytes.copyBytes(),
            "accepted contacts=2 identities=1 conversations=0 messages=0", nil)
        var headerless = encoded
        headerless[4] = 2
        add("provisioning-payload", "version-2-without-header", headerless, "rejected payloadMalformed", nil)
        add("provisioning-payload", "trailing-byte", encoded + [0], "rejected payloadMalformed", nil)
        let archiveBytes = try archive.encoded().copyBytes()
        add("history-archive", "two-conversations", archiveBytes, "accepted conversations=2 messages=3", nil)
        add("history-archive", "empty", try HistoryArchive().encoded().copyBytes(), "accepted conversations=0 messages=0", nil)

        var data = DataMessage()
        data.messageID = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
        data.timestamp = 1_700_000_000_000
        data.body = "hello"
        var text = MessageContent()
        text.data = data
        add("message-content", "data", try ContentCodec.encode(text), "accepted data", nil)
        var groupData = data
        groupData.group.groupID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        groupData.groupUpdate.kind = .create
        groupData.groupUpdate.members = ["alice", "bob"]
        groupData.groupUpdate.title = "trip"
        var group = MessageContent()
        group.data = groupData
        add("message-content", "group-create", try ContentCodec.encode(group), "accepted data", nil)
        var receipt = MessageContent()
        receipt.receipt.kind = .read
        receipt.receipt.messageIds = [data.messageID]
        add("message-content", "read-receipt", try ContentCodec.encode(receipt), "accepted receipt", nil)
        var sync = MessageContent()
        sync.sync.sent.destination = "bob"
        sync.sync.sent.message = data
        add("message-content", "sync-sent", try ContentCodec.encode(sync), "accepted sync", nil)
        var report = MessageContent()
        report.decryptionError.deviceID = 2
        report.decryptionError.timestamp = 1_700_000_000_000
        report.decryptionError.ratchetKey = Data(linkKey.serialized)
        add("message-content", "decryption-error", try ContentCodec.encode(report), "accepted decryption-error", nil)
        if let distribution = ProtocolFixture.shared?.distributions.first {
            var keys = MessageContent()
            keys.senderKeyDistribution.groupID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            keys.senderKeyDistribution.distribution = Data(distribution)
            add("message-content", "sender-key-distribution", try ContentCodec.encode(keys), "accepted sender-key-distribution", nil)
        }
        add("message-content", "no-padding-marker", Array(repeating: 0, count: 160), "rejected badPadding", nil)
    }

    // MARK: wire

    static func addWireSeeds(_ add: (String, String, [UInt8], String, String?) -> Void) throws {
        let encoder = WireCoding.encoder()
        func json<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try encoder.encode(value)) }
        let id = UUID(uuidString: "01890A5D-AC96-774B-BCCE-B302099A8057") ?? UUID()
        let message = OutgoingDeviceMessage(deviceId: 1, registrationId: 4242, type: 3, content: Data([0x33, 1, 2, 3]))
        let send = SendMessageRequest(messages: [message], ownDeviceMessages: [], clientTimestamp: 1_700_000_000_000)
        add("wire-frame", "ack", try json(ClientFrame.ack([id])), "accepted ack fast", nil)
        add("wire-frame", "send", try json(ClientFrame.send(requestId: 7, to: "bob", send)), "accepted send fast", nil)
        add("wire-frame", "send-escaped-name", Array(#"{"type":"send","to":"b\u006fb","requestId":1,"messages":[]}"#.utf8),
            "accepted send", nil)
        add("wire-frame", "ping", try json(ClientFrame(type: .ping)), "accepted ping", nil)
        add("wire-frame", "presence", try json(ClientFrame(type: .subscribePresence, accounts: ["bob", "carol"])),
            "accepted subscribePresence", nil)
        add("wire-frame", "unknown-field", Array(#"{"type":"ack","ids":[],"extra":1}"#.utf8), "rejected unknownField", nil)
        add("wire-frame", "duplicate-key", Array(#"{"type":"ack","ids":[],"ids":[]}"#.utf8), "rejected malformed", nil)
        // Parse limits, checked while reading: one id more than an ack may carry, and nesting deeper than any wire type.
        add("wire-frame", "ack-too-many-ids", try json(ClientFrame.ack([UUID]((0...ClientFrameDecoding.maxAckIds).map { _ in id }))),
            "rejected tooManyItems", nil)
        add("wire-frame", "too-deep", Array((#"{"type":"ping","x":"# + String(repeating: "[", count: 20) + String(repeating: "]", count: 20) + "}").utf8),
            "rejected malformed", nil)

        let keys = NewDeviceKeys(
            registrationId: 4242, identityKey: Data([0x05] + Array(repeating: 7, count: 32)),
            signedPreKey: SignedPreKey(keyId: 1, publicKey: Data([0x05] + Array(repeating: 8, count: 32)), signature: Data(repeating: 9, count: 64)),
            oneTimePreKeys: [OneTimePreKey(keyId: 1, publicKey: Data([0x05] + Array(repeating: 10, count: 32)))], name: "phone")
        let requests: [(String, [UInt8])] = [
            ("register", try json(RegisterAccountRequest(name: "alice", device: keys))),
            ("send-message", try json(send)),
            ("upload-prekeys", try json(UploadPreKeysRequest(oneTimePreKeys: keys.oneTimePreKeys))),
            ("create-group", try json(CreateGroupRequest(members: ["bob", "carol"]))),
            ("group-members", try json(GroupMembersRequest(members: ["dave"]))),
            ("send-group-message", try json(SendGroupMessageRequest(type: 7, content: Data([1, 2, 3]), clientTimestamp: 5))),
            ("claim-link", try json(ClaimLinkRequest(code: "AAAAAAAAAAAAAAAAAAAAAA", device: keys))),
            ("approve-link", try json(ApproveLinkRequest(provisioningBlob: Data([1, 2, 3])))),
            ("push-subscription", try json(PushSubscriptionRequest(endpoint: "https://push.example/abc"))),
            ("client-frame", try json(ClientFrame.ack([id]))),
            ("bundle-batch", try json(PreKeyBundleBatchRequest(accounts: [
                BundleRequestTarget(account: "bob"), BundleRequestTarget(account: "carol", deviceIds: [1, 2]),
            ]))),
        ]
        for (index, (name, body)) in requests.enumerated() {
            add("wire-request", name, [UInt8(index)] + body, "accepted \(WireTargets.requestTypes[index].type)", nil)
        }
        add("wire-request", "register-missing-device", [0] + Array(#"{"name":"alice"}"#.utf8), "rejected malformed", nil)
        add("wire-request", "create-group-too-many", [3] + (try json(CreateGroupRequest(members: (0...500).map { "m\($0)" }))),
            "rejected tooManyItems", nil)
    }
}
