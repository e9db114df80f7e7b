/// A device of a user: the name the protocol stores sessions and identities under.
public struct ProtocolAddress: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let deviceId: UInt32

    public init(name: String, deviceId: UInt32) {
        self.name = name
        self.deviceId = deviceId
    }

    public var description: String { "\(name).\(deviceId)" }
}
