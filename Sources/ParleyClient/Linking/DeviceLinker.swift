import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyWire

/// A link started by the existing device: the relay's code, the ephemeral key E whose public half
/// is in `linkString`, and when the code expires. E's private key is dropped (its memory wiped)
/// once the link is approved or abandoned with `cancel()`.
public final class PendingLink: @unchecked Sendable {
    public let code: String
    /// Milliseconds since 1970 after which the relay no longer accepts a claim.
    public let expiresAt: Int64
    /// What the user carries to the new device (QR code or text).
    public let linkString: String
    public let ephemeralPublicKey: PublicKey
    private let lock = NSLock()
    private var ephemeral: PrivateKey?

    init(code: String, expiresAt: Int64, ephemeral: PrivateKey) {
        self.code = code
        self.expiresAt = expiresAt
        self.ephemeralPublicKey = ephemeral.publicKey
        self.linkString = LinkString(code: code, ephemeralPublicKey: ephemeral.publicKey).text
        self.ephemeral = ephemeral
    }

    /// Drops the ephemeral private key; the link can no longer be approved.
    public func cancel() {
        lock.lock()
        defer { lock.unlock() }
        ephemeral = nil
    }

    /// Whether the ephemeral private key is gone.
    public var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return ephemeral == nil
    }

    /// Hands out the ephemeral key exactly once.
    func takeEphemeral() -> PrivateKey? {
        lock.lock()
        defer { lock.unlock() }
        let key = ephemeral
        ephemeral = nil
        return key
    }
}

/// A device that has been linked: its store (open), credentials, the account name, how many messages
/// the approving device archived and how many of them were imported (fewer only when some were already
/// stored).
public struct LinkedDevice: Sendable {
    public let store: DeviceStore
    public let credentials: DeviceCredentials
    public let accountName: String
    public let importedMessages: Int
    public let archivedMessages: Int
}

/// How far the history archive's transfer is: sealed bytes sent (`upload`, approving device) or received
/// (`download`, new device) of `totalBytes`.
public struct HistoryProgress: Sendable, Equatable {
    public enum Phase: String, Sendable { case upload, download }
    public let phase: Phase
    public let bytes: Int
    public let totalBytes: Int
}

/// Links a new device to an account (Specs/client-content.md §7 and relay-protocol.md §4.5):
///
/// 1. existing device: `startLink` — relay code + ephemeral key E → link string;
/// 2. new device: `join` — parses the link string, claims the code with a provisioning key X as its
///    identity key, waits for approval;
/// 3. existing device: `awaitClaim`, the user confirms the new device's name and id, `approve` —
///    the provisioning payload (account identity, contacts, history) encrypted under
///    HKDF(X25519(E, X)) goes to the relay as an opaque blob; the relay keeps the device out of
///    bundles and fan-out until step 4;
/// 4. new device: decrypts, creates its store with the account identity and its own registration
///    id, imports, and uploads its real prekeys together with the account identity key.
public struct DeviceLinker: Sendable {
    /// How often the relay is polled while waiting for a claim or an approval.
    public var pollInterval: Duration
    public var keyManager: KeyManager
    /// Argon2id cost for a sealed store created by `join`.
    public var storeCost: KeyDerivationCost
    /// Told as the history archive goes up (`approve`) or comes down (`join`), after each piece.
    public var onHistoryProgress: (@Sendable (HistoryProgress) -> Void)?

    public init(
        pollInterval: Duration = .milliseconds(500), keyManager: KeyManager = KeyManager(),
        storeCost: KeyDerivationCost = .standard, onHistoryProgress: (@Sendable (HistoryProgress) -> Void)? = nil
    ) {
        self.pollInterval = pollInterval
        self.keyManager = keyManager
        self.storeCost = storeCost
        self.onHistoryProgress = onHistoryProgress
    }

    // MARK: existing device

    /// Asks the relay for a link code and makes the ephemeral key E.
    public func startLink(relay: RelayClient) async throws -> PendingLink {
        let response = try await Self.mapRelayErrors { try await relay.createLinkCode() }
        let ephemeral = try PrivateKey.generate(using: SystemRandom.shared)
        return PendingLink(code: response.code, expiresAt: response.expiresAt, ephemeral: ephemeral)
    }

    /// Polls until a new device has claimed the code. Show `name` and `deviceId` of the answer to
    /// the user before approving.
    public func awaitClaim(_ link: PendingLink, relay: RelayClient, timeout: Duration) async throws -> LinkClaimInfo {
        let deadline = ContinuousClock.now + timeout
        while true {
            let info = try await Self.mapRelayErrors { try await relay.linkInfo(code: link.code) }
            switch info.state {
            case .claimed: return info
            case .approved: throw LinkError.codeUnavailable
            case .open: break
            }
            guard ContinuousClock.now + pollInterval <= deadline else { throw LinkError.timedOut }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// Approves the claimed device: uploads the whole history, sealed in chunks under a key derived from the
    /// link's key agreement (`HistoryUpload`), then approves with the provisioning payload (account identity,
    /// contacts, the archive's header). The upload goes first: the relay takes it only while the code is
    /// claimed, and the new device reads the header only once approved.
    public func approve(
        _ link: PendingLink, claim: LinkClaimInfo, store: DeviceStore, accountName: String, ownDeviceId: UInt32,
        relay: RelayClient
    ) async throws {
        guard claim.code == link.code else { throw LinkError.unexpectedClaim("the claim is for another code") }
        guard claim.state == .claimed else { throw LinkError.unexpectedClaim("the code is \(claim.state.rawValue)") }
        guard let keyBytes = claim.identityKey, let provisioningKey = try? PublicKey(serialized: Array(keyBytes)) else {
            throw LinkError.unexpectedClaim("the claim has no usable identity key")
        }
        guard let ephemeral = link.takeEphemeral() else { throw LinkError.unexpectedClaim("the link is already finished") }
        let archive = try store.historyArchive(messageLimit: Int(Int32.max))
        let sealer = try HistorySealer(
            archive: try archive.encoded(), messageCount: archive.messages.count,
            key: try HistoryUpload.key(own: ephemeral, their: provisioningKey, code: link.code), code: link.code)
        let payload = try ProvisioningPayload(
            accountName: accountName, identity: store.identityKeyPair(), existingDeviceId: ownDeviceId,
            contacts: store.contacts().map { ArchivedContact(account: $0.account, displayName: $0.displayName, createdAt: $0.createdAt) },
            identities: store.archivedIdentities(), archive: HistoryArchive(), historyUpload: sealer.header)
        let encoded = try payload.encode(limit: ProvisioningPayload.maxPayloadBytes)
        let key = try LinkCrypto.key(own: ephemeral, their: provisioningKey, code: link.code)
        let blob = try LinkCrypto.seal(
            encoded.bytes, key: key,
            associatedData: LinkCrypto.associatedData(code: link.code, ephemeral: ephemeral.publicKey, provisioning: provisioningKey))
        let total = sealer.header.sealedBytes
        let report = onHistoryProgress
        report?(HistoryProgress(phase: .upload, bytes: 0, totalBytes: total))
        let onSent: (@Sendable (Int) -> Void)? = report.map { report in
            { @Sendable sent in report(HistoryProgress(phase: .upload, bytes: sent, totalBytes: total)) }
        }
        try await Self.mapRelayErrors {
            try await relay.uploadLinkHistory(
                code: link.code, size: total, pieceCount: sealer.header.chunkCount, piece: { index in try sealer.chunk(index) },
                progress: onSent)
        }
        try await Self.mapRelayErrors {
            try await relay.approveLink(code: link.code, ApproveLinkRequest(provisioningBlob: blob, awaitIdentityUpload: true))
        }
    }

    // MARK: new device

    /// Links this device with `linkString`: claims the code, waits (up to `timeout`) for the
    /// approval, decrypts the provisioning blob, creates the store at `storePath` with the account
    /// identity, imports contacts and history, and publishes its prekeys under the account
    /// identity. Nothing is left at `storePath` when any step fails.
    public func join(
        linkString: String, baseURL: String, storePath: String, passphrase: Passphrase?, deviceName: String?,
        timeout: Duration
    ) async throws -> LinkedDevice {
        let link = try LinkString(parsing: linkString)
        guard !FileManager.default.fileExists(atPath: storePath) else { throw LinkError.storeExists(path: storePath) }
        let deadline = ContinuousClock.now + timeout

        // The provisioning key X stands in for the identity key until the account identity arrives.
        let registrationId = UInt32.random(in: 1...16380)
        let provisioning = try IdentityKeyPair.generate()
        let signed = try SignedPreKeyRecord.generate(id: 1, identity: provisioning, timestamp: 0, using: SystemRandom.shared)
        let claimKeys = NewDeviceKeys(
            registrationId: registrationId, identityKey: Data(provisioning.identityKey.serialized),
            signedPreKey: SignedPreKey(keyId: signed.id, publicKey: Data(signed.keyPair.publicKey.serialized), signature: Data(signed.signature)),
            oneTimePreKeys: [], name: deviceName)
        let anonymous = RelayClient(baseURL: baseURL)
        let credentials = try await Self.mapRelayErrors {
            try await anonymous.claimLink(ClaimLinkRequest(code: link.code, device: claimKeys))
        }
        let relay = anonymous.authenticated(as: credentials)

        // Wait for the approval.
        var blob: Data? = nil
        while blob == nil {
            let status = try await Self.mapRelayErrors(unauthorizedMeans: .codeUnavailable) { try await relay.linkStatus() }
            if status.state == .approved {
                guard let approved = status.provisioningBlob else { throw LinkError.blobAuthenticationFailed }
                blob = approved
            } else {
                guard ContinuousClock.now + pollInterval <= deadline else { throw LinkError.timedOut }
                try await Task.sleep(for: pollInterval)
            }
        }
        guard let blob else { throw LinkError.blobAuthenticationFailed }

        // Decrypt and parse before anything is written to disk.
        let key = try LinkCrypto.key(own: provisioning.privateKey, their: link.ephemeralPublicKey, code: link.code)
        let plaintext = try LinkCrypto.open(
            blob, key: key,
            associatedData: LinkCrypto.associatedData(
                code: link.code, ephemeral: link.ephemeralPublicKey, provisioning: provisioning.identityKey.publicKey))
        let payload = try ProvisioningPayload.decode(plaintext)
        guard payload.accountName == credentials.account else {
            throw LinkError.payloadMalformed("the payload is for another account")
        }
        // The history, downloaded and verified whole before anything is written to disk.
        var archive = payload.archive
        var archived = archive.messages.count
        if let header = payload.historyUpload {
            let historyKey = try HistoryUpload.key(own: provisioning.privateKey, their: link.ephemeralPublicKey, code: link.code)
            archive = try await downloadHistory(header: header, key: historyKey, code: link.code, relay: relay)
            archived = Int(header.messageCount)
        }

        let store = try Self.createStore(
            at: storePath, identity: payload.identity, registrationId: registrationId, passphrase: passphrase, cost: storeCost)
        do {
            let imported = try store.transaction { store in
                let count = try store.importArchive(
                    contacts: payload.contacts, identities: payload.identities, archive: archive)
                // The existing device shares the account identity.
                let sibling = ProtocolAddress(name: payload.accountName, deviceId: payload.existingDeviceId)
                try store.saveIdentity(payload.identity.identityKey, for: sibling)
                try store.setVerified(true, for: sibling)
                return count
            }
            let keys = try keyManager.registrationKeys(store: store, now: UInt64(Date().timeIntervalSince1970))
            guard let signedPreKey = keys.signedPreKey else { throw LinkError.payloadMalformed("no signed prekey generated") }
            let oneTime = keys.oneTimePreKeys.map { OneTimePreKey(keyId: $0.id, publicKey: Data($0.keyPair.publicKey.serialized)) }
            let batch = 100
            // The first upload carries the account identity: it replaces the provisioning key at
            // the relay and activates the device.
            _ = try await Self.mapRelayErrors {
                try await relay.uploadPreKeys(
                    UploadPreKeysRequest(
                        identityKey: Data(payload.identity.identityKey.serialized),
                        signedPreKey: SignedPreKey(
                            keyId: signedPreKey.id, publicKey: Data(signedPreKey.keyPair.publicKey.serialized),
                            signature: Data(signedPreKey.signature)),
                        oneTimePreKeys: Array(oneTime.prefix(batch)),
                        kyberLastResortPreKey: keys.kyberLastResortPreKey.map(ParleyDevice.wire),
                        kyberOneTimePreKeys: keys.kyberOneTimePreKeys.map(ParleyDevice.wire)))
            }
            var offset = batch
            while offset < oneTime.count {
                let chunk = Array(oneTime[offset..<min(offset + batch, oneTime.count)])
                _ = try await Self.mapRelayErrors { try await relay.uploadPreKeys(UploadPreKeysRequest(oneTimePreKeys: chunk)) }
                offset += batch
            }
            if payload.historyUpload != nil {
                // Imported: the relay may drop the archive now (else it is swept with the link).
                try? await relay.acknowledgeLinkHistory()
            }
            return LinkedDevice(
                store: store, credentials: credentials, accountName: payload.accountName, importedMessages: imported,
                archivedMessages: archived)
        } catch {
            try? store.close()
            StoreFiles(path: storePath).removeAll()
            throw error
        }
    }

    /// Downloads the archive `header` announces, opens and checks every chunk as it arrives and the digest at
    /// the end, and parses it. Any failure is a typed `LinkError` and returns nothing: no part of an archive is
    /// ever imported.
    func downloadHistory(header: HistoryUploadHeader, key: SecretBytes, code: String, relay: RelayClient) async throws -> HistoryArchive {
        var opener = try HistoryOpener(header: header, key: key, code: code)
        defer { opener.wipe() }
        let total = header.sealedBytes
        let report = onHistoryProgress
        report?(HistoryProgress(phase: .download, bytes: 0, totalBytes: total))
        do {
            try await relay.downloadLinkHistory(maxBytes: total) { buffer in
                try buffer.withUnsafeReadableBytes { raw in try opener.append(raw) }
                report?(HistoryProgress(phase: .download, bytes: opener.received, totalBytes: total))
            }
        } catch RelayClientError.rejected(404, _, _) {
            throw LinkError.historyMissing
        } catch RelayClientError.badResponse {
            throw LinkError.historyTooLong
        } catch let error as LinkError {
            throw error
        } catch let error as RelayClientError {
            throw error
        } catch {
            // The connection ended early: what arrived is checked below and refused as cut short.
            guard opener.received < total else { throw error }
        }
        let plaintext = try opener.finish()
        let archive = try HistoryArchive.decode(plaintext)
        guard archive.messages.count == Int(header.messageCount) else {
            throw LinkError.historyMalformed("\(archive.messages.count) messages where \(header.messageCount) were announced")
        }
        return archive
    }

    /// `DeviceStore.create`, with "a file is already there" as `LinkError.storeExists`.
    static func createStore(
        at path: String, identity: IdentityKeyPair, registrationId: UInt32, passphrase: Passphrase?, cost: KeyDerivationCost
    ) throws -> DeviceStore {
        do {
            return try DeviceStore.create(
                at: path, identity: identity, registrationId: registrationId, passphrase: passphrase, cost: cost)
        } catch {
            if case .alreadyExists = error { throw LinkError.storeExists(path: path) }
            throw error
        }
    }

    // MARK: errors

    /// Relay refusals that mean something for linking become `LinkError`s; other errors pass.
    static func mapRelayErrors<T>(
        unauthorizedMeans: LinkError? = nil, _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch RelayClientError.deviceRemoved where unauthorizedMeans != nil {
            // A pending device's credential refused: its claim expired and was swept.
            throw unauthorizedMeans ?? LinkError.codeUnavailable
        } catch let RelayClientError.rejected(status, code, message) {
            switch (status, code) {
            case (404, _), (_, .linkCodeUnavailable?): throw LinkError.codeUnavailable
            case (_, .tooManyDevices?): throw LinkError.tooManyDevices
            case (401, _) where unauthorizedMeans != nil: throw unauthorizedMeans ?? LinkError.codeUnavailable
            default: throw LinkError.relayRejected(status: status, code: code?.rawValue, message: message)
            }
        }
    }
}
