/// Answer of `GET /healthz`.
public struct HealthResponse: Codable, Sendable, Equatable {
    /// `status` of a relay that serves (HTTP 200).
    public static let ok = "ok"
    /// `status` of a relay that cannot reach its database (HTTP 503): it refuses what needs storage until it is back.
    public static let degraded = "degraded"

    public var status: String
    public var version: Int

    public init(status: String, version: Int) {
        self.status = status
        self.version = version
    }
}
