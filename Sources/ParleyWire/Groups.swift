import Foundation

/// `POST /v1/groups`: create a group; the caller's account becomes a member (and the admin).
public struct CreateGroupRequest: Codable, Sendable, Equatable {
    /// Other accounts to add initially.
    public var members: [String]

    public init(members: [String]) {
        self.members = members
    }
}

/// Body of `POST /v1/groups/{id}/members` (add), `.../members/remove` and `.../admins`.
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
    /// Every member, sorted.
    public var members: [String]
    public var createdAt: Int64
    /// The members who may add and remove members and make admins, sorted (a subset of `members`).
    public var admins: [String]
    /// The group's version: 1 at creation, one more after every change of its members or admins.
    /// Membership events carry the version they produce; a group send may name the version its
    /// sender encrypted for (`SendGroupMessageRequest.epoch`).
    public var epoch: Int64

    public init(groupId: UUID, creator: String, members: [String], createdAt: Int64, admins: [String] = [], epoch: Int64 = 1) {
        self.groupId = groupId
        self.creator = creator
        self.members = members
        self.createdAt = createdAt
        self.admins = admins
        self.epoch = epoch
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
    /// The group version (`GroupInfo.epoch`) whose members the sender handed its key to. When
    /// present and not the group's current version, the relay stores nothing and answers `409
    /// groupChanged`: the sender catches up and sends again, so that the members who get the
    /// message are exactly the members of the version it names.
    public var epoch: Int64?

    public init(type: Int, content: Data, clientTimestamp: Int64? = nil, epoch: Int64? = nil) {
        self.type = type
        self.content = content
        self.clientTimestamp = clientTimestamp
        self.epoch = epoch
    }
}

/// Membership change, delivered as the content of an `EnvelopeKind.groupEvent` envelope, in
/// queue order with the messages around it: a device that applies events as they come knows,
/// for every group message, who the members were when the relay accepted it.
public struct GroupEvent: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable {
        case created, membersAdded, membersRemoved, adminsAdded
    }

    public var groupId: UUID
    public var action: Action
    /// The account that made the change.
    public var actor: String
    /// The accounts the change names: every member (`created`), those added, those removed, or
    /// those made admins (`adminsAdded`).
    public var members: [String]
    /// The group's version after this change (`GroupInfo.epoch`). Absent in events queued by a
    /// relay older than versions.
    public var epoch: Int64?
    /// Every member after this change, sorted.
    public var currentMembers: [String]?
    /// Every admin after this change, sorted.
    public var admins: [String]?
    /// Members the relay made admins because the change left the group without one (the last
    /// admin left or was removed): the longest-standing remaining member.
    public var promoted: [String]?

    public init(
        groupId: UUID, action: Action, actor: String, members: [String], epoch: Int64? = nil, currentMembers: [String]? = nil,
        admins: [String]? = nil, promoted: [String]? = nil
    ) {
        self.groupId = groupId
        self.action = action
        self.actor = actor
        self.members = members
        self.epoch = epoch
        self.currentMembers = currentMembers
        self.admins = admins
        self.promoted = promoted
    }
}
