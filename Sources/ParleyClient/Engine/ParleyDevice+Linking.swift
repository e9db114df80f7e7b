import AsyncHTTPClient
import Foundation
import ParleyProtocol
import ParleyWire

/// Linking through the engine: the existing device shows a link and approves; the new device
/// joins, records its account and learns the account's groups.
extension ParleyDevice {
    /// Starts a link on this (existing) device: show `linkString` to the new device.
    public func startLink(linker: DeviceLinker = DeviceLinker()) async throws -> PendingLink {
        try await linker.startLink(relay: relay)
    }

    /// Waits for the new device to claim the link.
    public func awaitClaim(_ link: PendingLink, timeout: Duration, linker: DeviceLinker = DeviceLinker()) async throws -> LinkClaimInfo {
        try await linker.awaitClaim(link, relay: relay, timeout: timeout)
    }

    /// Approves the claimed device: the account identity, contacts and history go to it,
    /// encrypted end to end.
    public func approve(_ link: PendingLink, claim: LinkClaimInfo, linker: DeviceLinker = DeviceLinker()) async throws {
        try await linker.approve(link, claim: claim, store: store, accountName: account.name, ownDeviceId: account.deviceId, relay: relay)
        if let id = claim.deviceId, let registration = claim.registrationId {
            try store.transaction { store in
                if try store.contact(account: account.name) == nil { try store.saveContact(account: account.name, displayName: nil) }
                try store.saveContactDevice(account: account.name, deviceId: id, registrationId: registration)
            }
        }
    }

    /// Joins an account as a new device from a link string shown by one of its devices. Returns the device,
    /// the messages imported and the messages the approving device archived ("imported N of M").
    public static func join(
        linkString: String, serverURL: String, storePath: String, passphrase: Passphrase? = nil, deviceName: String? = nil,
        timeout: Duration = .seconds(120), linker: DeviceLinker = DeviceLinker(), http: HTTPClient = ParleyHTTP.shared
    ) async throws -> (device: ParleyDevice, importedMessages: Int, archivedMessages: Int) {
        let linked = try await linker.join(
            linkString: linkString, baseURL: serverURL, storePath: storePath, passphrase: passphrase, deviceName: deviceName, timeout: timeout)
        try linked.store.saveAccount(
            LocalAccount(
                name: linked.credentials.account, deviceId: linked.credentials.deviceId, credential: linked.credentials.credential,
                serverURL: serverURL))
        let device = try ParleyDevice.attach(store: linked.store, http: http)
        try? await device.refreshGroups()
        return (device, linked.importedMessages, linked.archivedMessages)
    }

    /// Records the groups the relay lists for this account, with their members.
    public func refreshGroups() async throws {
        let groups = try await relay.groups()
        try store.transaction { store in
            for info in groups {
                _ = try store.groupConversation(groupId: info.groupId.uuidString.lowercased())
                try adoptGroupState(info, store: store)
            }
        }
    }
}
