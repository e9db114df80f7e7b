import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyRelay
import ParleyWire
import Testing
@testable import ParleyClient

/// Linking a second device through a real relay in-process: the account identity travels
/// end-to-end encrypted, the new device imports contacts and history and publishes its bundle
/// under the account identity.
@Suite(.timeLimit(.minutes(4)))
struct LinkingTests {
    struct Client {
        let store: DeviceStore
        let identity: IdentityKeyPair
        let relay: RelayClient
        var account: String { relay.credentials?.account ?? "" }
    }

    struct Fixture {
        let dir: URL
        let relayPath: String
        let running: RunningRelay
        var baseURL: String { "http://127.0.0.1:\(running.port)" }

        static func start() async throws -> Fixture {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-link-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let relayPath = dir.appendingPathComponent("relay.sqlite").path
            let running = try await RelayServer.start(RelayConfiguration(host: "127.0.0.1", port: 0, databasePath: relayPath))
            return Fixture(dir: dir, relayPath: relayPath, running: running)
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        func stop() async throws {
            try await running.stop()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    static func client(_ prefix: String, registrationId: UInt32, fixture: Fixture) async throws -> Client {
        let identity = try IdentityKeyPair.generate()
        let store = try DeviceStore.create(at: fixture.path("\(prefix).sqlite"), identity: identity, registrationId: registrationId)
        let keys = try KeyManager().registrationKeys(store: store, now: 0)
        let signed = try #require(keys.signedPreKey)
        let device = NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(identity.identityKey.serialized),
            signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: keys.oneTimePreKeys.map { OneTimePreKey(keyId: $0.id, publicKey: Data($0.keyPair.publicKey.serialized)) },
            kyberLastResortPreKey: keys.kyberLastResortPreKey.map {
                KyberPreKey(keyId: $0.id, publicKey: Data($0.keyPair.publicKey.serialized), signature: Data($0.signature))
            })
        let anonymous = RelayClient(baseURL: fixture.baseURL)
        let credentials = try await anonymous.register(name: "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())", device: device)
        return Client(store: store, identity: identity, relay: anonymous.authenticated(as: credentials))
    }

    static func bundle(_ wire: DevicePreKeyBundle) throws -> PreKeyBundle {
        PreKeyBundle(
            registrationId: wire.registrationId, deviceId: wire.deviceId, identityKey: try IdentityKey(serialized: Array(wire.identityKey)),
            signedPreKeyId: wire.signedPreKey.keyId, signedPreKey: try PublicKey(serialized: Array(wire.signedPreKey.publicKey)),
            signedPreKeySignature: Array(wire.signedPreKey.signature), preKeyId: wire.oneTimePreKey?.keyId,
            preKey: try wire.oneTimePreKey.map { try PublicKey(serialized: Array($0.publicKey)) },
            kyberPreKey: try wire.kyberPreKey.map { key throws(ProtocolError) in
                try PreKeyBundle.KyberPreKey(id: key.keyId, serializedPublicKey: Array(key.publicKey), signature: Array(key.signature))
            })
    }

    static func contains(_ haystack: Data, _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return haystack.range(of: Data(needle)) != nil
    }

    static let linker = DeviceLinker(pollInterval: .milliseconds(50), storeCost: .interactive)

    // MARK: full link

    @Test func linkSecondDeviceWithHistoryThenBobTalksToIt() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 101, fixture: fixture)
        let bob = try await Self.client("bob", registrationId: 202, fixture: fixture)

        // Alice's device 1 has a contact (verified), a 1:1 conversation and a group, with history.
        try alice.store.saveContact(account: bob.account, displayName: "Bob B.")
        try alice.store.saveIdentity(bob.identity.identityKey, for: ProtocolAddress(name: bob.account, deviceId: 1))
        try alice.store.setVerified(true, for: ProtocolAddress(name: bob.account, deviceId: 1))
        let direct = try alice.store.directConversation(with: bob.account)
        let group = try alice.store.groupConversation(groupId: "group-1", title: "Friends")
        let me = ProtocolAddress(name: alice.account, deviceId: 1)
        let bobDevice = ProtocolAddress(name: bob.account, deviceId: 1)
        let incomingId = UUID()
        var expected: [NewMessage] = [
            NewMessage(conversation: direct.id, sender: me, outgoing: true, sentAt: 1_000, body: "hi bob", statuses: [bob.account: .pending]),
            NewMessage(conversation: direct.id, serverId: incomingId, sender: bobDevice, outgoing: false, sentAt: 2_000, receivedAt: 2_500, body: "hi alice ✓"),
            NewMessage(conversation: group.id, serverId: UUID(), sender: bobDevice, outgoing: false, sentAt: 3_000, receivedAt: 3_100, body: nil, couldNotDecrypt: true),
            NewMessage(conversation: group.id, sender: me, outgoing: true, sentAt: 4_000, body: "group hello", statuses: [bob.account: .sent]),
        ]
        for message in expected { _ = try alice.store.insertMessage(message) }
        let firstId = try #require(try alice.store.messages(in: direct.id, limit: 10).messages.last?.id)
        try alice.store.setStatus(.read, for: bob.account, of: firstId)
        expected[0].statuses = [bob.account: .read]

        // Link: device 2 joins while device 1 waits for the claim and approves it.
        let link = try await Self.linker.startLink(relay: alice.relay)
        #expect(link.linkString.hasPrefix("parley-link:\(link.code):"))
        let newPath = fixture.path("alice-2.sqlite")
        let linker = Self.linker
        let baseURL = fixture.baseURL
        let linkString = link.linkString
        async let joined = linker.join(
            linkString: linkString, baseURL: baseURL, storePath: newPath, passphrase: nil, deviceName: "laptop",
            timeout: .seconds(30))
        let claim = try await Self.linker.awaitClaim(link, relay: alice.relay, timeout: .seconds(30))
        #expect(claim.name == "laptop")
        #expect(claim.deviceId == 2)
        try await Self.linker.approve(link, claim: claim, store: alice.store, accountName: alice.account, ownDeviceId: 1, relay: alice.relay)
        #expect(link.isFinished)
        let device = try await joined
        #expect(device.accountName == alice.account)
        #expect(device.credentials.deviceId == 2)
        #expect(device.importedMessages == 4)

        // The account identity key pair, its own registration id.
        let identity = try device.store.identityKeyPair()
        #expect(identity.identityKey == alice.identity.identityKey)
        #expect(identity.privateKey.rawBytes().copyBytes() == alice.identity.privateKey.rawBytes().copyBytes())
        #expect(try device.store.localRegistrationId() != 0)

        // Contacts with their trust state; the sibling device's identity.
        #expect(try device.store.contact(account: bob.account)?.displayName == "Bob B.")
        let bobIdentity = try #require(try device.store.remoteIdentity(for: bobDevice))
        #expect(bobIdentity.identityKey == bob.identity.identityKey)
        #expect(bobIdentity.verified)
        #expect(try device.store.identity(for: me) == alice.identity.identityKey)

        // The history, field by field.
        let conversations = try device.store.conversations()
        #expect(Set(conversations.map(\.kind)) == [.direct(peer: bob.account), .group(groupId: "group-1")])
        #expect(conversations.first { $0.kind == .group(groupId: "group-1") }?.title == "Friends")
        var imported: [StoredMessage] = []
        for conversation in conversations {
            imported += try device.store.messages(in: conversation.id, limit: 100).messages
        }
        let original = try alice.store.messages(in: direct.id, limit: 100).messages + alice.store.messages(in: group.id, limit: 100).messages
        #expect(imported.count == 4)
        for message in original {
            let copy = try #require(imported.first { $0.sortAt == message.sortAt && $0.sender == message.sender })
            #expect(copy.serverId == message.serverId)
            #expect(copy.outgoing == message.outgoing)
            #expect(copy.sentAt == message.sentAt)
            #expect(copy.receivedAt == message.receivedAt)
            #expect(copy.body == message.body)
            #expect(copy.couldNotDecrypt == message.couldNotDecrypt)
            #expect(copy.statuses == message.statuses)
        }
        #expect(try device.store.messageId(serverId: incomingId) != nil)
        #expect(try device.store.searchMessages("group").map(\.body) == ["group hello"])

        // Its bundle at the relay carries the account identity, and the signed prekey verifies.
        let bundles = try await bob.relay.bundles(account: alice.account)
        #expect(bundles.devices.map(\.deviceId) == [1, 2])
        let second = try #require(bundles.devices.first { $0.deviceId == 2 })
        #expect(second.identityKey == Data(alice.identity.identityKey.serialized))
        #expect(XEdDSA.verify(Array(second.signedPreKey.signature), of: Array(second.signedPreKey.publicKey), by: alice.identity.identityKey.publicKey))

        // Bob sets up sessions with both of alice's devices; device 2 decrypts.
        var content = MessageContent()
        var data = DataMessage()
        data.messageID = UUID().uuidString
        data.body = "hello alice's laptop"
        content.data = data
        let prefetched = try bundles.devices.map(Self.bundle)
        let ciphertexts = try DeviceFanOut().encrypt(try ContentCodec.encode(content), for: alice.account, deviceIds: [1, 2], store: bob.store) { ids in
            prefetched.filter { ids.contains($0.deviceId) }
        }
        let sent = try await bob.relay.send(
            to: alice.account,
            SendMessageRequest(messages: ciphertexts.map {
                OutgoingDeviceMessage(deviceId: $0.deviceId, registrationId: $0.registrationId, type: $0.type, content: Data($0.body))
            }))
        #expect(sent.queued == 2)
        let connection = RelayConnection.connect(webSocketURL: "ws://127.0.0.1:\(fixture.running.port)/v1/ws", credentials: device.credentials)
        var received: MessageContent? = nil
        for await frame in connection.frames {
            if frame.type == .message, let envelope = frame.envelope {
                let sender = ProtocolAddress(name: envelope.senderAccount, deviceId: envelope.senderDevice)
                let bytes = try SessionCipher.decrypt(try PreKeySignalMessage(serialized: Array(envelope.content)), from: sender, store: device.store)
                received = try ContentCodec.decode(bytes)
                try connection.ack([envelope.id])
            }
            if frame.type == .queueEmpty { break }
        }
        await connection.close()
        #expect(received?.data.body == "hello alice's laptop")

        // The relay's database never held the identity private key.
        let secret = alice.identity.privateKey.rawBytes().copyBytes()
        for suffix in ["", "-wal"] {
            if let bytes = FileManager.default.contents(atPath: fixture.relayPath + suffix) {
                #expect(!Self.contains(bytes, secret), "private key bytes found in relay.sqlite\(suffix)")
            }
        }
        try device.store.close()
        // Positive control: the new device's unsealed store does hold it, so the search works.
        let storeBytes = try #require(FileManager.default.contents(atPath: newPath))
        #expect(Self.contains(storeBytes, secret))
        try await fixture.running.stop()
        for suffix in ["", "-wal"] {
            if let bytes = FileManager.default.contents(atPath: fixture.relayPath + suffix) {
                #expect(!Self.contains(bytes, secret), "private key bytes found in relay.sqlite\(suffix) after stop")
            }
        }
        try? FileManager.default.removeItem(at: fixture.dir)
    }

    // MARK: a history larger than the blob (issue 12: it was cut at 256 KiB without a word)

    /// Fills alice's store with `total` incoming messages of about `bodyBytes` bytes each, in one conversation.
    static func fillHistory(_ store: DeviceStore, peer: String, total: Int, bodyBytes: Int) throws -> ConversationID {
        let conversation = try store.directConversation(with: peer)
        let body = String(repeating: "0123456789", count: max(1, bodyBytes / 10))
        try store.transaction { store in
            for index in 0..<total {
                _ = try store.insertMessage(
                    NewMessage(
                        conversation: conversation.id, serverId: UUID(), sender: ProtocolAddress(name: peer, deviceId: 1),
                        outgoing: false, sentAt: Int64(index), receivedAt: Int64(10_000 + index), body: "\(index) \(body)"))
            }
        }
        return conversation.id
    }

    /// Every message of `conversation`, newest first, page by page.
    static func allMessages(_ store: DeviceStore, _ conversation: ConversationID) throws -> [StoredMessage] {
        var all: [StoredMessage] = []
        var cursor: MessageCursor? = nil
        repeat {
            let page = try store.messages(in: conversation, before: cursor, limit: DeviceStore.maxPageSize)
            all += page.messages
            cursor = page.next
        } while cursor != nil
        return all
    }

    /// Records the progress reports of one side.
    final class ProgressLog: @unchecked Sendable {
        private let lock = NSLock()
        private var reports: [HistoryProgress] = []
        func add(_ report: HistoryProgress) { lock.withLock { reports.append(report) } }
        var all: [HistoryProgress] { lock.withLock { reports } }
    }

    /// Links a second device of alice through the relay with the default linker settings (but for the poll
    /// interval); returns the new device and both sides' progress reports.
    static func linkWithHistory(
        fixture: Fixture, alice: Client, passphrase: Passphrase? = nil
    ) async throws -> (LinkedDevice, upload: [HistoryProgress], download: [HistoryProgress]) {
        let uploads = ProgressLog()
        let downloads = ProgressLog()
        var approving = Self.linker
        approving.onHistoryProgress = { uploads.add($0) }
        var joining = Self.linker
        joining.onHistoryProgress = { downloads.add($0) }
        let link = try await approving.startLink(relay: alice.relay)
        let baseURL = fixture.baseURL
        let linkString = link.linkString
        let newPath = fixture.path("alice-2-\(UUID().uuidString.prefix(6)).sqlite")
        let joiner = joining
        async let joined = joiner.join(
            linkString: linkString, baseURL: baseURL, storePath: newPath, passphrase: passphrase, deviceName: nil,
            timeout: .seconds(120))
        let claim = try await approving.awaitClaim(link, relay: alice.relay, timeout: .seconds(120))
        try await approving.approve(link, claim: claim, store: alice.store, accountName: alice.account, ownDeviceId: 1, relay: alice.relay)
        let device = try await joined
        return (device, uploads.all, downloads.all)
    }

    /// 3,000 messages (~640 KB of archive, well over the 256 KiB blob that cut it to ~970 on main): every
    /// message arrives, in order, and the new device counts N of N.
    @Test func wholeHistoryOverTheBlobLimitTransfers() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 31, fixture: fixture)
        let peer = "carol"
        let total = 3_000
        let conversation = try Self.fillHistory(alice.store, peer: peer, total: total, bodyBytes: 200)
        let (device, uploads, downloads) = try await Self.linkWithHistory(fixture: fixture, alice: alice, passphrase: testPassphrase)
        #expect(device.store.isSealed)
        #expect(device.archivedMessages == total)
        #expect(device.importedMessages == total)
        let copied = try Self.allMessages(device.store, try device.store.directConversation(with: peer).id)
        let original = try Self.allMessages(alice.store, conversation)
        #expect(copied.count == total)
        #expect(copied.map(\.body) == original.map(\.body))
        #expect(copied.map(\.receivedAt) == original.map(\.receivedAt))
        #expect(copied.map(\.serverId) == original.map(\.serverId))
        // Progress: from 0 to the whole sealed size, never backwards, on both sides.
        for log in [uploads, downloads] {
            #expect(log.first?.bytes == 0)
            #expect(log.last.map { $0.bytes == $0.totalBytes } == true)
            #expect(zip(log, log.dropFirst()).allSatisfy { $0.bytes <= $1.bytes })
            #expect((log.last?.totalBytes ?? 0) > 256 * 1024)
        }
        // The relay dropped the archive once the new device acknowledged it.
        let relay = RelayClient(baseURL: fixture.baseURL).authenticated(as: device.credentials)
        await #expect(throws: RelayClientError.self) { try await relay.downloadLinkHistory(maxBytes: 1 << 30) { _ in } }
        try device.store.close()
        try await fixture.stop()
    }

    /// A history of several MiB (6,000 messages of ~1 KiB: ~6.4 MiB sealed, over a hundred chunks) arrives whole.
    @Test func severalMiBHistoryTransfersWhole() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 32, fixture: fixture)
        let total = 6_000
        let conversation = try Self.fillHistory(alice.store, peer: "dave", total: total, bodyBytes: 1_000)
        let (device, uploads, _) = try await Self.linkWithHistory(fixture: fixture, alice: alice)
        #expect((uploads.last?.totalBytes ?? 0) > 6 * 1024 * 1024)
        #expect(device.archivedMessages == total)
        #expect(device.importedMessages == total)
        let copied = try Self.allMessages(device.store, try device.store.directConversation(with: "dave").id)
        let original = try Self.allMessages(alice.store, conversation)
        #expect(copied.count == total)
        #expect(copied.map(\.body) == original.map(\.body))
        try device.store.close()
        try await fixture.stop()
    }

    /// The approving device's upload is altered on its way (one byte of chunk 1 flipped; chunks 0 and 1 swapped;
    /// the last chunk dropped): the new device refuses it with a typed error, imports nothing and leaves no store.
    @Test(arguments: ["tampered", "reordered", "truncated"])
    func alteredHistoryIsRefusedAndNothingIsImported(_ alteration: String) async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 33, fixture: fixture)
        _ = try Self.fillHistory(alice.store, peer: "erin", total: 1_000, bodyBytes: 200)
        let link = try await Self.linker.startLink(relay: alice.relay)
        let linkString = link.linkString
        let baseURL = fixture.baseURL
        let linker = Self.linker
        let storePath = fixture.path("alice-2.sqlite")
        let task = Task {
            try await linker.join(
                linkString: linkString, baseURL: baseURL, storePath: storePath, passphrase: nil, deviceName: nil, timeout: .seconds(60))
        }
        let claim = try await linker.awaitClaim(link, relay: alice.relay, timeout: .seconds(60))
        // What `approve` does, with the upload altered.
        let ephemeral = try #require(link.takeEphemeral())
        let provisioning = try PublicKey(serialized: Array(try #require(claim.identityKey)))
        let archive = try alice.store.historyArchive(messageLimit: 100_000)
        let sealer = try HistorySealer(
            archive: try archive.encoded(), messageCount: archive.messages.count,
            key: try HistoryUpload.key(own: ephemeral, their: provisioning, code: link.code), code: link.code)
        #expect(sealer.header.chunkCount >= 3)
        var chunks = try (0..<sealer.header.chunkCount).map { try sealer.chunk($0) }
        switch alteration {
        case "tampered": chunks[1][100] ^= 0x01
        case "reordered": chunks.swapAt(0, 1)
        default: chunks.removeLast()
        }
        let upload = chunks
        try await alice.relay.uploadLinkHistory(
            code: link.code, size: upload.reduce(0) { $0 + $1.count }, pieceCount: upload.count, piece: { upload[$0] })
        let payload = ProvisioningPayload(
            accountName: alice.account, identity: try alice.store.identityKeyPair(), existingDeviceId: 1, contacts: [], identities: [],
            archive: HistoryArchive(), historyUpload: sealer.header)
        let key = try LinkCrypto.key(own: ephemeral, their: provisioning, code: link.code)
        let blob = try LinkCrypto.seal(
            try payload.encode().bytes, key: key,
            associatedData: LinkCrypto.associatedData(code: link.code, ephemeral: ephemeral.publicKey, provisioning: provisioning))
        try await alice.relay.approveLink(code: link.code, ApproveLinkRequest(provisioningBlob: blob, awaitIdentityUpload: true))
        let error = await #expect(throws: LinkError.self) { try await task.value }
        switch alteration {
        case "tampered": #expect(error == .historyAuthenticationFailed(chunk: 1))
        case "reordered": #expect(error == .historyAuthenticationFailed(chunk: 0))
        default: #expect(error == .historyTruncated(chunk: sealer.header.chunkCount - 1, of: sealer.header.chunkCount))
        }
        #expect(!FileManager.default.fileExists(atPath: storePath))
        try await fixture.stop()
    }

    // MARK: bad blobs

    /// Runs a link where the existing device approves with `makeBlob(link, claim)`; returns what `join` threw.
    static func joinError(
        fixture: Fixture, alice: Client, storePath: String, makeBlob: @Sendable (PendingLink, LinkClaimInfo) throws -> Data
    ) async throws -> (any Error)? {
        let link = try await linker.startLink(relay: alice.relay)
        let linkString = link.linkString
        let baseURL = fixture.baseURL
        let linker = Self.linker
        let task = Task {
            try await linker.join(
                linkString: linkString, baseURL: baseURL, storePath: storePath, passphrase: nil, deviceName: nil, timeout: .seconds(30))
        }
        let claim = try await linker.awaitClaim(link, relay: alice.relay, timeout: .seconds(30))
        let blob = try makeBlob(link, claim)
        try await alice.relay.approveLink(code: link.code, ApproveLinkRequest(provisioningBlob: blob, awaitIdentityUpload: true))
        do {
            let device = try await task.value
            try device.store.close()
            return nil
        } catch {
            return error
        }
    }

    static func blob(_ link: PendingLink, _ claim: LinkClaimInfo, store: DeviceStore, account: String, code: String? = nil) throws -> Data {
        let ephemeral = try #require(link.takeEphemeral())
        let provisioning = try PublicKey(serialized: Array(try #require(claim.identityKey)))
        let payload = ProvisioningPayload(
            accountName: account, identity: try store.identityKeyPair(), existingDeviceId: 1, contacts: [], identities: [],
            archive: HistoryArchive())
        let bindCode = code ?? link.code
        let key = try LinkCrypto.key(own: ephemeral, their: provisioning, code: bindCode)
        return try LinkCrypto.seal(
            try payload.encode().bytes, key: key,
            associatedData: LinkCrypto.associatedData(code: bindCode, ephemeral: ephemeral.publicKey, provisioning: provisioning))
    }

    static func storeFilesAbsent(_ path: String) -> Bool {
        ["", "-wal", "-shm", "-journal"].allSatisfy { !FileManager.default.fileExists(atPath: path + $0) }
    }

    @Test func tamperedOrMisboundBlobIsRejectedAndLeavesNoStore() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 7, fixture: fixture)
        let store = alice.store
        let account = alice.account

        // One flipped byte.
        let flippedPath = fixture.path("flipped.sqlite")
        let flipped = try await Self.joinError(fixture: fixture, alice: alice, storePath: flippedPath) { link, claim in
            var blob = try Self.blob(link, claim, store: store, account: account)
            blob[blob.count / 2] ^= 0x01
            return blob
        }
        #expect(flipped as? LinkError == .blobAuthenticationFailed)
        #expect(Self.storeFilesAbsent(flippedPath))

        // A blob bound to another code (an attacker replaying one link's blob on another fails the same way).
        let otherPath = fixture.path("other-code.sqlite")
        let other = try await Self.joinError(fixture: fixture, alice: alice, storePath: otherPath) { link, claim in
            try Self.blob(link, claim, store: store, account: account, code: "AAAAAAAAAAAAAAAAAAAAAA")
        }
        #expect(other as? LinkError == .blobAuthenticationFailed)
        #expect(Self.storeFilesAbsent(otherPath))

        // Garbage that is not even a blob.
        let junkPath = fixture.path("junk.sqlite")
        let junk = try await Self.joinError(fixture: fixture, alice: alice, storePath: junkPath) { _, _ in Data([1, 2, 3]) }
        #expect(junk as? LinkError == .blobAuthenticationFailed)
        #expect(Self.storeFilesAbsent(junkPath))

        // The relay never activated those devices: only device 1 is listed.
        #expect(try await alice.relay.devices(of: alice.account).map(\.deviceId) == [1])
        try await fixture.stop()
    }

    @Test func joinRefusesAnExistingStoreBeforeClaiming() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 8, fixture: fixture)
        let link = try await Self.linker.startLink(relay: alice.relay)
        let path = fixture.path("exists.sqlite")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        await #expect(throws: LinkError.storeExists(path: path)) {
            _ = try await Self.linker.join(
                linkString: link.linkString, baseURL: fixture.baseURL, storePath: path, passphrase: nil, deviceName: nil,
                timeout: .seconds(5))
        }
        #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
        // The code was not used: still open.
        #expect(try await alice.relay.linkInfo(code: link.code).state == .open)
        // A code nobody created.
        let bogus = LinkString(code: "AAAAAAAAAAAAAAAAAAAAAA", ephemeralPublicKey: link.ephemeralPublicKey).text
        await #expect(throws: LinkError.codeUnavailable) {
            _ = try await Self.linker.join(
                linkString: bogus, baseURL: fixture.baseURL, storePath: fixture.path("bogus.sqlite"), passphrase: nil,
                deviceName: nil, timeout: .seconds(5))
        }
        #expect(Self.storeFilesAbsent(fixture.path("bogus.sqlite")))
        link.cancel()
        #expect(link.isFinished)
        try await fixture.stop()
    }

    @Test func claimTimesOut() async throws {
        let fixture = try await Fixture.start()
        let alice = try await Self.client("alice", registrationId: 9, fixture: fixture)
        let link = try await Self.linker.startLink(relay: alice.relay)
        await #expect(throws: LinkError.timedOut) {
            _ = try await Self.linker.awaitClaim(link, relay: alice.relay, timeout: .milliseconds(200))
        }
        try await fixture.stop()
    }
}

/// Link strings and the provisioning payload, without a relay.
struct LinkFormatTests {
    static let key: PublicKey = {
        // 0x05 || the X25519 base point: a fixed, valid public key.
        var bytes = [UInt8](repeating: 0, count: 33)
        bytes[0] = 0x05
        bytes[1] = 9
        guard let key = try? PublicKey(serialized: bytes) else { fatalError("fixture key") }
        return key
    }()
    static let code = "abcdefghijklmnopqrstug"

    @Test func linkStringRoundTrip() throws {
        let link = LinkString(code: Self.code, ephemeralPublicKey: Self.key)
        let parsed = try LinkString(parsing: "  " + link.text + "\n")
        #expect(parsed == link)
        #expect(link.text.hasPrefix("parley-link:\(Self.code):"))
    }

    @Test(arguments: [
        "",
        "parley-link",
        "parley-link::",
        "https://example.com/x",
        "parley-lnk:abcdefghijklmnopqrstug:KEY",
        "parley-link:abcdefghijklmnopqrstu:KEY",  // 21-character code
        "parley-link:abcdefghijklmnopqrstu+:KEY",  // not base64url
        "parley-link:abcdefghijklmnopqrstug",
        "parley-link:abcdefghijklmnopqrstug:KEY:extra",
        "parley-link:abcdefghijklmnopqrstug:AAAA",  // short key
        "parley-link:abcdefghijklmnopqrstug:TYPE6",  // type byte 0x06
        "parley-link:abcdefghijklmnopqrstug:KEY=",
        "parley-link:abcdefghijklmnopqrstuv:KEY",  // non-canonical code (stray bits)
        "parley-link:abcdefghijklmnopqrstug:" + String(repeating: "A", count: 200),
    ])
    func malformedLinkStringsAreRefused(_ input: String) {
        let text = input.replacingOccurrences(of: "KEY", with: Base64URL.encode(Self.key.serialized))
            .replacingOccurrences(of: "TYPE6", with: Base64URL.encode([6] + Array(Self.key.serialized.dropFirst())))
        let error = #expect(throws: LinkError.self) { _ = try LinkString(parsing: text) }
        if case .malformedLinkString = error {} else { Issue.record("expected malformedLinkString, got \(String(describing: error))") }
    }

    static func payload(messages: Int) throws -> ProvisioningPayload {
        let alice = ProtocolAddress(name: "alice", deviceId: 1)
        return ProvisioningPayload(
            accountName: "alice", identity: try IdentityKeyPair.generate(), existingDeviceId: 1,
            contacts: [ArchivedContact(account: "bob", displayName: "Bob", createdAt: 5)],
            identities: [ArchivedIdentity(address: ProtocolAddress(name: "bob", deviceId: 1), identityKey: try IdentityKeyPair.generate().identityKey, verified: true, firstSeen: 9)],
            archive: HistoryArchive(
                conversations: [ArchivedConversation(kind: .direct(peer: "bob"), title: nil, createdAt: 1)],
                messages: (0..<messages).map { index in
                    ArchivedMessage(
                        conversation: 0, serverId: UUID(), sender: alice, outgoing: true, sentAt: Int64(index), receivedAt: nil,
                        sortAt: Int64(1_000 - index), body: String(repeating: "x", count: 100), couldNotDecrypt: false,
                        statuses: ["bob": .delivered])
                }))
    }

    @Test func payloadRoundTripAndLimit() throws {
        let payload = try Self.payload(messages: 10)
        let encoded = try payload.encode()
        #expect(encoded.messages == 10)
        let decoded = try ProvisioningPayload.decode(encoded.bytes)
        #expect(decoded.accountName == "alice")
        #expect(decoded.identity.identityKey == payload.identity.identityKey)
        #expect(decoded.contacts == payload.contacts)
        #expect(decoded.identities == payload.identities)
        #expect(decoded.archive == payload.archive)

        // Under a limit, the newest messages that fit are kept.
        let limited = try payload.encode(limit: encoded.bytes.count - 200)
        #expect(limited.messages == 8)
        #expect(try ProvisioningPayload.decode(limited.bytes).archive.messages == Array(payload.archive.messages.prefix(8)))
        let error = #expect(throws: LinkError.self) { _ = try payload.encode(limit: 10) }
        if case .payloadTooLarge = error {} else { Issue.record("expected payloadTooLarge") }
    }

    /// Version 2 carries the history upload's header; it round-trips, and a version 1 payload still decodes.
    @Test func payloadWithHistoryUploadHeaderRoundTrips() throws {
        var payload = try Self.payload(messages: 0)
        let header = HistoryUploadHeader(messageCount: 7, plaintextBytes: 200_000, chunkBytes: 65_536, digest: Array(repeating: 9, count: 32))
        payload.historyUpload = header
        let encoded = try payload.encode().bytes
        #expect(encoded.withBytes { $0[4] } == ProvisioningPayload.versionWithHistoryUpload)
        let decoded = try ProvisioningPayload.decode(encoded)
        #expect(decoded.historyUpload == header)
        #expect(decoded.archive == payload.archive)
        #expect(header.chunkCount == 4)
        #expect(header.sealedBytes == 200_000 + 4 * LinkCrypto.overhead)
        payload.historyUpload = nil
        #expect(try ProvisioningPayload.decode(try payload.encode().bytes).historyUpload == nil)
    }

    /// The chunked seal opens in any split of the received bytes, and only under its own key, code and order.
    @Test func historyUploadOpensInAnySplitAndOnlyWhole() throws {
        let archive = try Self.payload(messages: 1_500).archive
        let plaintext = try archive.encoded()
        let key = SecretBytes(copying: Array(repeating: 7, count: 32))
        let code = "AAAAAAAAAAAAAAAAAAAAAA"
        let sealer = try HistorySealer(archive: plaintext, messageCount: archive.messages.count, key: key, code: code)
        #expect(sealer.header.chunkCount > 2)
        var upload = Data()
        for index in 0..<sealer.header.chunkCount { upload.append(try sealer.chunk(index)) }
        #expect(upload.count == sealer.header.sealedBytes)
        for split in [1, 977, 65_536 + 41, upload.count] {
            var opener = try HistoryOpener(header: sealer.header, key: key, code: code)
            var offset = 0
            while offset < upload.count {
                let end = min(upload.count, offset + split)
                try upload[offset..<end].withUnsafeBytes { try opener.append($0) }
                offset = end
            }
            let opened = try opener.finish()
            #expect(opened == plaintext)
            #expect(try HistoryArchive.decode(opened) == archive)
        }
        // Another key or another code: chunk 0 does not open.
        for (otherKey, otherCode) in [(SecretBytes(copying: Array(repeating: 8, count: 32)), code), (key, "BAAAAAAAAAAAAAAAAAAAAA")] {
            var opener = try HistoryOpener(header: sealer.header, key: otherKey, code: otherCode)
            #expect(throws: LinkError.historyAuthenticationFailed(chunk: 0)) { try upload.withUnsafeBytes { try opener.append($0) } }
        }
        // A wrong digest in the header: every chunk opens, the whole is refused.
        var forged = sealer.header
        forged.digest[0] ^= 1
        var opener = try HistoryOpener(header: forged, key: key, code: code)
        try upload.withUnsafeBytes { try opener.append($0) }
        #expect(throws: LinkError.historyAuthenticationFailed(chunk: sealer.header.chunkCount)) { _ = try opener.finish() }
        // One byte more than announced.
        var longer = try HistoryOpener(header: sealer.header, key: key, code: code)
        #expect(throws: LinkError.historyTooLong) { try (upload + [0]).withUnsafeBytes { try longer.append($0) } }
    }

    @Test func malformedPayloadsAreRefused() throws {
        let bytes = try Self.payload(messages: 2).encode().bytes.copyBytes()
        // Every truncation fails cleanly.
        for length in stride(from: 0, to: bytes.count, by: 7) {
            #expect(throws: LinkError.self) { _ = try ProvisioningPayload.decode(SecretBytes(copying: Array(bytes.prefix(length)))) }
        }
        #expect(throws: LinkError.payloadMalformed("trailing bytes")) {
            _ = try ProvisioningPayload.decode(SecretBytes(copying: bytes + [0]))
        }
        var version = bytes
        version[4] = 3
        #expect(throws: LinkError.unsupportedPayloadVersion(3)) { _ = try ProvisioningPayload.decode(SecretBytes(copying: version)) }
        // Version 2 must carry the history upload's header after the archive.
        version[4] = 2
        #expect(throws: LinkError.payloadMalformed("truncated")) { _ = try ProvisioningPayload.decode(SecretBytes(copying: version)) }
        var magic = bytes
        magic[0] ^= 0xFF
        #expect(throws: LinkError.payloadMalformed("not a provisioning payload")) {
            _ = try ProvisioningPayload.decode(SecretBytes(copying: magic))
        }
    }
}
