import Foundation
import Hummingbird
import ParleyWire

/// Linking a new device: code created by an existing device, claimed by the new one, approved by the existing one.
struct LinkRoutes {
    let core: RelayCore
    var auth: Authenticator { Authenticator(store: core.store) }

    func register(on router: Router<some RequestContext>) {
        router.post("/v1/devices/links") { request, _ in
            let device = try await auth.authenticate(request.headers)
            let now = RelayClock.nowMillis()
            let code = Credentials.randomBase64URL(byteCount: 16)
            let expiresAt = now + core.limits.linkCodeTTLSeconds * 1000
            try await core.store.createLinkCode(device.address, code: code, now: now, expiresAt: expiresAt)
            return try HTTPSupport.json(LinkCodeResponse(code: code, expiresAt: expiresAt), status: .created)
        }
        router.post("/v1/devices/links/claim") { request, _ in
            let body = try await HTTPSupport.decode(ClaimLinkRequest.self, from: request, limit: RelayLimits.registrationBody)
            try InputValidation.check(body.device)
            let token = Credentials.newToken()
            let (account, deviceId) = try await core.store.claimLinkCode(
                code: body.code, device: body.device, credentialHash: Credentials.hash(token),
                now: RelayClock.nowMillis(), maxDevices: core.limits.maxDevicesPerAccount)
            core.logger.info("link code claimed", metadata: ["account": "\(account)", "device": "\(deviceId)"])
            return try HTTPSupport.json(
                DeviceCredentials(account: account, deviceId: deviceId, credential: token), status: .created)
        }
        router.get("/v1/devices/links/status") { request, _ in
            let device = try await auth.authenticate(request.headers, allowPending: true)
            return try HTTPSupport.json(try await core.store.linkStatus(device.address))
        }
        router.get("/v1/devices/links/:code") { request, context in
            let device = try await auth.authenticate(request.headers)
            guard let code = context.parameters.get("code") else { throw RelayError.notFound("unknown link code") }
            return try HTTPSupport.json(
                try await core.store.linkInfo(accountId: device.accountId, code: code, now: RelayClock.nowMillis()))
        }
        router.post("/v1/devices/links/:code/approve") { request, context in
            let device = try await auth.authenticate(request.headers)
            guard let code = context.parameters.get("code") else { throw RelayError.notFound("unknown link code") }
            let body = try await HTTPSupport.decode(ApproveLinkRequest.self, from: request, limit: RelayLimits.ciphertextBody)
            guard body.provisioningBlob.count <= RelayLimits.maxCiphertextBytes else {
                throw RelayError.payloadTooLarge("provisioning blob larger than \(RelayLimits.maxCiphertextBytes) bytes")
            }
            try await core.store.approveLink(
                accountId: device.accountId, code: code, provisioningBlob: body.provisioningBlob,
                awaitIdentityUpload: body.awaitIdentityUpload ?? false, now: RelayClock.nowMillis())
            core.logger.info("device link approved", metadata: ["account": "\(device.account)"])
            return HTTPSupport.noContent()
        }
        registerHistory(on: router)
    }

    /// The history archive of a link (relay-protocol.md §4.5.1): uploaded by the device that created the code while
    /// the code is claimed, before it approves; downloaded by the new device, which then acknowledges it. The
    /// body is streamed to the store in pieces of `RelayLimits.linkHistoryPieceBytes`, never held whole.
    func registerHistory(on router: Router<some RequestContext>) {
        router.put("/v1/devices/links/:code/history") { request, context in
            let device = try await auth.authenticate(request.headers)
            guard let code = context.parameters.get("code") else { throw RelayError.notFound("unknown link code") }
            let bound = core.limits.maxLinkHistoryBytes
            let declared = request.headers[.contentLength].flatMap { Int($0) }
            // Refused before a byte of the body is read.
            if let declared, declared > bound { throw RelayError.payloadTooLarge("history archive larger than \(bound) bytes") }
            let allowance = try await core.store.beginLinkHistory(
                device.address, code: code, now: RelayClock.nowMillis(), maxBytes: bound,
                maxAccountBytes: core.limits.maxLinkHistoryBytesPerAccount)
            do {
                if let declared, declared > allowance {
                    throw RelayError.payloadTooLarge("history archive larger than the \(allowance) bytes this account has left")
                }
                let pieceBytes = RelayLimits.linkHistoryPieceBytes
                var total = 0
                var seq = 0
                var piece = ByteBuffer()
                for try await var part in request.body {
                    total += part.readableBytes
                    // A chunked body (no Content-Length) is cut off as soon as it passes the bound.
                    guard total <= allowance else {
                        throw RelayError.payloadTooLarge("history archive larger than \(allowance) bytes")
                    }
                    piece.writeBuffer(&part)
                    while piece.readableBytes >= pieceBytes, let bytes = piece.readBytes(length: pieceBytes) {
                        try await core.store.appendLinkHistory(code: code, seq: seq, data: Data(bytes))
                        seq += 1
                    }
                    piece.discardReadBytes()
                }
                if piece.readableBytes > 0, let bytes = piece.readBytes(length: piece.readableBytes) {
                    try await core.store.appendLinkHistory(code: code, seq: seq, data: Data(bytes))
                }
                guard total > 0 else { throw RelayError.invalidField("empty history archive") }
                try await core.store.finishLinkHistory(code: code, now: RelayClock.nowMillis())
                core.logger.info("link history uploaded", metadata: ["account": "\(device.account)", "bytes": "\(total)"])
            } catch {
                try? await core.store.abortLinkHistory(code: code)
                throw error
            }
            return HTTPSupport.noContent()
        }
        router.get("/v1/devices/links/history") { request, _ in
            let device = try await auth.authenticate(request.headers, allowPending: true)
            let info = try await core.store.linkHistory(device.address)
            let store = core.store
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(contentLength: info.bytes) { writer in
                    // One piece in memory at a time; a piece swept meanwhile ends the body short (the client sees
                    // a truncated archive).
                    for seq in 0..<info.pieces {
                        guard let data = try await store.linkHistoryPiece(info.key, seq: seq) else {
                            throw RelayError.notFound("the history archive is gone")
                        }
                        try await writer.write(ByteBuffer(bytes: data))
                    }
                    try await writer.finish(nil)
                })
        }
        router.delete("/v1/devices/links/history") { request, _ in
            let device = try await auth.authenticate(request.headers, allowPending: true)
            guard try await core.store.deleteLinkHistory(device.address) else {
                throw RelayError.notFound("no history archive for this device")
            }
            return HTTPSupport.noContent()
        }
    }
}
