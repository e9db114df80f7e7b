import Foundation
import Hummingbird
import ParleyWire

/// Groups: membership management (admins add, remove and promote; anyone may leave) and group sends (one
/// ciphertext, fanned out).
struct GroupRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.post("/v1/groups") { request, _ in
            let device = try await auth.authenticate(request.headers)
            let body = try await HTTPSupport.decode(CreateGroupRequest.self, from: request, limit: core.limits.groupMembersBody)
            try Self.checkNames(body.members, limit: core.limits.maxGroupMembers)
            let now = RelayClock.nowMillis()
            let (info, affected) = try await core.store.createGroup(
                creator: device, members: body.members, now: now, expiresAt: core.expiry(from: now), limits: core.limits)
            await core.announce(affected.devices)
            return try HTTPSupport.json(info, status: .created)
        }
        router.get("/v1/groups") { request, _ in
            let device = try await auth.authenticate(request.headers)
            return try HTTPSupport.json(GroupListResponse(groups: try await core.store.groups(of: device.accountId)))
        }
        router.get("/v1/groups/:id") { request, context in
            let device = try await auth.authenticate(request.headers)
            let groupId = try HTTPSupport.uuidParameter(context, "id")
            return try HTTPSupport.json(try await core.store.group(groupId, viewer: device.accountId))
        }
        let store = core.store
        registerMemberChange("/v1/groups/:id/members", on: router, change: store.addGroupMembers)
        registerMemberChange("/v1/groups/:id/members/remove", on: router, change: store.removeGroupMembers)
        registerMemberChange("/v1/groups/:id/admins", on: router, change: store.addGroupAdmins)
        router.put("/v1/groups/:id/messages") { request, context in
            let device = try await auth.authenticate(request.headers)
            let groupId = try HTTPSupport.uuidParameter(context, "id")
            let body = try await HTTPSupport.decode(SendGroupMessageRequest.self, from: request, limit: RelayLimits.ciphertextBody)
            try InputValidation.checkCiphertext(type: body.type, content: body.content)
            let now = RelayClock.nowMillis()
            let submission = MessageSubmission(
                sender: device, payload: .group(groupId: groupId, type: body.type, content: body.content, epoch: body.epoch),
                clientTimestamp: body.clientTimestamp, serverTimestamp: now, expiresAt: core.expiry(from: now))
            let receipt = try await MessageRoutes.submit(submission, core: core)
            return try HTTPSupport.json(
                SendMessageResponse(serverTimestamp: receipt.serverTimestamp, queued: receipt.recipients.count, ids: receipt.ids))
        }
    }

    /// One of the store's membership changes (add members, remove members, add admins): all three take the same
    /// body and answer the group as it is after the change.
    typealias MemberChange = @Sendable (
        _ actor: AuthenticatedDevice, _ groupId: UUID, _ members: [String], _ now: Int64, _ expiresAt: Int64,
        _ limits: RelayLimits
    ) async throws -> (GroupInfo, AffectedQueues)

    private func registerMemberChange(
        _ path: RouterPath, on router: Router<some RequestContext>, change: @escaping MemberChange
    ) {
        let core = self.core
        let auth = self.auth
        router.post(path) { request, context in
            let device = try await auth.authenticate(request.headers)
            let groupId = try HTTPSupport.uuidParameter(context, "id")
            let body = try await HTTPSupport.decode(GroupMembersRequest.self, from: request, limit: core.limits.groupMembersBody)
            try Self.checkNames(body.members, limit: core.limits.maxGroupMembers)
            let now = RelayClock.nowMillis()
            let (info, affected) = try await change(device, groupId, body.members, now, core.expiry(from: now), core.limits)
            await core.announce(affected.devices)
            return try HTTPSupport.json(info)
        }
    }

    static func checkNames(_ names: [String], limit: Int) throws {
        guard names.count <= limit else { throw RelayError.tooManyItems("at most \(limit) members per request") }
        for name in names { try AccountName.validate(name) }
    }
}
