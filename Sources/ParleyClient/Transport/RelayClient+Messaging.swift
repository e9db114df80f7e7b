import Foundation
import NIOHTTP1
import ParleyWire

/// Endpoints the messaging engine uses beyond registration and 1:1 sends.
extension RelayClient {
    public func preKeyStatus() async throws -> PreKeyStatusResponse {
        try await request(.GET, "/v1/keys/status", as: PreKeyStatusResponse.self)
    }

    public func createGroup(members: [String]) async throws -> GroupInfo {
        try await request(.POST, "/v1/groups", body: CreateGroupRequest(members: members), as: GroupInfo.self)
    }

    public func group(_ id: UUID) async throws -> GroupInfo {
        try await request(.GET, "/v1/groups/\(id.uuidString.lowercased())", as: GroupInfo.self)
    }

    public func groups() async throws -> [GroupInfo] {
        try await request(.GET, "/v1/groups", as: GroupListResponse.self).groups
    }

    public func addMembers(_ members: [String], to id: UUID) async throws -> GroupInfo {
        try await request(.POST, "/v1/groups/\(id.uuidString.lowercased())/members", body: GroupMembersRequest(members: members), as: GroupInfo.self)
    }

    public func removeMembers(_ members: [String], from id: UUID) async throws -> GroupInfo {
        try await request(
            .POST, "/v1/groups/\(id.uuidString.lowercased())/members/remove", body: GroupMembersRequest(members: members), as: GroupInfo.self)
    }

    /// Makes members admins (admins only: `403 notAdmin` otherwise).
    public func addAdmins(_ members: [String], in id: UUID) async throws -> GroupInfo {
        try await request(.POST, "/v1/groups/\(id.uuidString.lowercased())/admins", body: GroupMembersRequest(members: members), as: GroupInfo.self)
    }

    /// Sends one sender-key ciphertext to every member device of the group.
    public func sendGroup(_ id: UUID, _ message: SendGroupMessageRequest) async throws -> SendMessageResponse {
        try await request(.PUT, "/v1/groups/\(id.uuidString.lowercased())/messages", body: message, as: SendMessageResponse.self)
    }
}

extension RelayClientError {
    /// Whether trying the same request later may succeed (rate limits, full queues, the relay
    /// restarting); mismatched and stale devices are repaired, not retried as they are.
    public var isTransient: Bool {
        switch self {
        case .rateLimited: return true
        case .rejected(let status, _, _): return status == 429 || status == 507 || status >= 500
        case .mismatchedDevices, .staleDevices, .badResponse, .deviceRemoved: return false
        }
    }
}

extension RelayClientError: CustomStringConvertible {
    /// What a removed device says (the CLI prints it for `.deviceRemoved` and `ClientError.deviceRemoved`).
    public static let deviceRemovedText = "this device was removed from the account (the relay no longer accepts its credential)"

    public var description: String {
        switch self {
        case .mismatchedDevices(let account, let missing, let extra):
            return "device list of \(account ?? "?") out of date (missing \(missing), extra \(extra))"
        case .staleDevices(let account, let stale): return "devices \(stale) of \(account ?? "?") were reinstalled"
        case .rateLimited(let seconds, _): return "rate limited by the relay (retry in \(seconds) s)"
        case .rejected(let status, let code, let message): return "relay refused (\(status)\(code.map { " \($0.rawValue)" } ?? "")): \(message)"
        case .badResponse(let what): return "unexpected answer from the relay: \(what)"
        case .deviceRemoved: return Self.deviceRemovedText
        }
    }
}
