import Foundation

/// `POST /v1/groups`: create a group; the caller's account becomes a member (and the admin).
public struct CreateGroupRequest: Codable, Sendable, Equatable {
    /// Other accounts to add initially.
    public var members: [String]

    public init(members: [String]) {
        self.members = members
    }
}

/// `POST /v1/groups/{id}/members` and `DELETE`-style removal body.
public struct GroupMembersRequest: Codable, Sendable, Equatable {
    public var members: [String]

    public init(members: [String]) {
        self.members = members
    }
}

/// Answer of group endpoints.
public struct GroupInfo: Codable, Sendable, Equatable {
    public var groupId: UUID
    public var creator: String
    public var members: [String]
    public var createdAt: Int64

    public init(groupId: UUID, creator: String, members: [String], createdAt: Int64) {
        self.groupId = groupId
        self.creator = creator
        self.members = members
        self.createdAt = createdAt
    }
}

/// Answer of `GET /v1/groups`.
public struct GroupListResponse: Codable, Sendable, Equatable {
    public var groups: [GroupInfo]

    public init(groups: [GroupInfo]) {
        self.groups = groups
    }
}

/// `PUT /v1/groups/{id}/messages`: ONE ciphertext for all members (sender keys); stored once.
public struct SendGroupMessageRequest: Codable, Sendable, Equatable {
    public var type: Int
    public var content: Data
    public var clientTimestamp: Int64?

    public init(type: Int, content: Data, clientTimestamp: Int64? = nil) {
        self.type = type
        self.content = content
        self.clientTimestamp = clientTimestamp
    }
}

/// Membership change, delivered as the content of an `EnvelopeKind.groupEvent` envelope.
public struct GroupEvent: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable {
        case created, membersAdded, membersRemoved
    }

    public var groupId: UUID
    public var action: Action
    public var actor: String
    public var members: [String]

    public init(groupId: UUID, action: Action, actor: String, members: [String]) {
        self.groupId = groupId
        self.action = action
        self.actor = actor
        self.members = members
    }
}
