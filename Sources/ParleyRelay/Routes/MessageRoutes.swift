import Foundation
import Hummingbird
import ParleyWire

/// 1:1 sends: validated and committed through the write batcher; answered only after the commit.
struct MessageRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.put("/v1/messages/:account") { request, context in
            let sender = try await auth.authenticate(request.headers)
            guard let recipient = context.parameters.get("account") else { throw RelayError.notFound("unknown account") }
            let body = try await HTTPSupport.decode(SendMessageRequest.self, from: request, limit: core.limits.directMessageBody)
            for message in body.messages + body.ownDeviceMessages {
                try InputValidation.checkCiphertext(type: message.type, content: message.content)
            }
            let now = RelayClock.nowMillis()
            let submission = MessageSubmission(
                sender: sender,
                payload: .direct(recipient: recipient, messages: body.messages, own: body.ownDeviceMessages),
                clientTimestamp: body.clientTimestamp, serverTimestamp: now, expiresAt: core.expiry(from: now))
            let receipt = try await Self.submit(submission, core: core)
            return try HTTPSupport.json(
                SendMessageResponse(serverTimestamp: receipt.serverTimestamp, queued: receipt.recipients.count, ids: receipt.ids))
        }
    }

    static func submit(_ submission: MessageSubmission, core: RelayCore) async throws -> SubmissionReceipt {
        let start = ContinuousClock.now
        do {
            let receipt = try await core.batcher.submit(submission)
            core.metrics.sendLatency.record(start.duration(to: .now))
            return receipt
        } catch {
            core.metrics.refused.increment()
            throw error
        }
    }

    /// `submit` with a completion handler (runs on the committing task, must not block).
    static func submit(
        _ submission: MessageSubmission, core: RelayCore,
        completion: @escaping @Sendable (Result<SubmissionReceipt, any Error>) -> Void
    ) {
        let start = ContinuousClock.now
        core.batcher.submit(submission) { result in
            switch result {
            case .success: core.metrics.sendLatency.record(start.duration(to: .now))
            case .failure: core.metrics.refused.increment()
            }
            completion(result)
        }
    }
}
