/// JSON body of every non-2xx HTTP answer, and payload of WebSocket `error` frames.
public struct ErrorResponse: Codable, Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    /// With `mismatchedDevices`: device ids the message must also cover.
    public var missingDevices: [UInt32]?
    /// With `mismatchedDevices`: device ids the message must not address.
    public var extraDevices: [UInt32]?
    /// With `staleDevices`: device ids whose registration id changed.
    public var staleDevices: [UInt32]?
    /// With `mismatchedDevices`/`staleDevices`/`queueFull`: the account concerned.
    public var account: String?

    public init(
        code: ErrorCode, message: String, missingDevices: [UInt32]? = nil, extraDevices: [UInt32]? = nil,
        staleDevices: [UInt32]? = nil, account: String? = nil
    ) {
        self.code = code
        self.message = message
        self.missingDevices = missingDevices
        self.extraDevices = extraDevices
        self.staleDevices = staleDevices
        self.account = account
    }
}
