/// The caller of a request, after its credentials were verified.
public struct AuthenticatedDevice: Sendable, Hashable {
    /// Internal account row id.
    let accountId: Int64
    public let account: String
    public let deviceId: UInt32

    var address: DeviceAddress { DeviceAddress(accountId: accountId, deviceId: deviceId) }
}

/// One device queue, by internal account id.
struct DeviceAddress: Sendable, Hashable {
    let accountId: Int64
    let deviceId: UInt32
}
