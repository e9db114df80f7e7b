/// A device of a user: the name the protocol stores sessions and identities under.
public struct ProtocolAddress: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let deviceId: UInt32
    /// Hashed once: stores look addresses up several times per message.
    private let hashCode: Int

    public init(name: String, deviceId: UInt32) {
        self.name = name
        self.deviceId = deviceId
        var hasher = Hasher()
        hasher.combine(name)
        hasher.combine(deviceId)
        hashCode = hasher.finalize()
    }

    public static func == (lhs: ProtocolAddress, rhs: ProtocolAddress) -> Bool {
        lhs.hashCode == rhs.hashCode && lhs.deviceId == rhs.deviceId && lhs.name == rhs.name
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(hashCode)
    }

    public var description: String { "\(name).\(deviceId)" }
}
