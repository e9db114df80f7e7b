/// Answer of `GET /healthz`.
public struct HealthResponse: Codable, Sendable, Equatable {
    public var status: String
    public var version: Int

    public init(status: String, version: Int) {
        self.status = status
        self.version = version
    }
}
