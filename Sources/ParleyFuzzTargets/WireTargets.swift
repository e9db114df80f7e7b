import Foundation
import ParleyWire

/// The relay's decoders of what clients send, exactly as the relay calls them: request bodies
/// (`StrictWireDecoder` with each route's parse limits) and WebSocket frames (`ClientFrameDecoding`: size
/// bound, `FastFrameDecoder` for `ack`/`send`, else the strict decoder with the frame limits).
/// Invariants: the fast decoder accepts only what the strict one accepts, with the same value; an
/// accepted request re-encodes to JSON the strict decoder accepts again as the same value.
enum WireTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "wire-frame", summary: "client frames: fast decoder ⊆ strict decoder, same value", body: frame),
        FuzzTarget(name: "wire-request", summary: "request bodies (first byte picks the type): strict decoding round-trips", body: request),
    ]

    static func frame(_ data: [UInt8]) -> FuzzOutcome {
        let decided = ClientFrameDecoding.decode(data)  // what the relay's WebSocket session does
        let strict = Result { () throws(WireDecodingError) -> ClientFrame in
            try StrictWireDecoder.decode(ClientFrame.self, bytes: data, limits: ClientFrameDecoding.parseLimits)
        }
        if let fast = FastFrameDecoder.decodeClientFrame(data) {
            guard case .success(let value) = strict else {
                return .violation("the fast decoder accepted a frame the strict decoder refuses")
            }
            if fast != value { return .violation("the fast and strict decoders disagree on a frame") }
        }
        switch decided {
        case .success(let frame):
            guard case .success(let value) = strict, value == frame else {
                return .violation("the relay's frame decision differs from the strict decoder")
            }
            let fast = FastFrameDecoder.decodeClientFrame(data) != nil
            return .accepted("\(frame.type.rawValue)\(fast ? " fast" : "")")
        case .failure(.tooLarge): return .rejected("tooLarge")
        case .failure(.invalid(let error)): return .rejected(error.kind)
        }
    }

    /// The request bodies the relay decodes, one per route that takes a body, with the parse limits the
    /// route uses at the relay's default settings (`RelayLimits`' `BodyLimit`s: the longest array each
    /// route accepts). Appended only: a seed's first byte selects its type.
    /// Metatypes only: immutable, safe to share.
    nonisolated(unsafe) static let requestTypes: [(type: any Codable.Type, maxArrayElements: Int)] = [
        (RegisterAccountRequest.self, 100),  // keyUploadBody: 100 one-time prekeys
        (SendMessageRequest.self, 6),  // directMessageBody: maxDevicesPerAccount
        (UploadPreKeysRequest.self, 100),  // keyUploadBody
        (CreateGroupRequest.self, 500),  // groupMembersBody: maxGroupMembers
        (GroupMembersRequest.self, 500),  // groupMembersBody
        (SendGroupMessageRequest.self, 0),  // ciphertextBody
        (ClaimLinkRequest.self, 100),  // keyUploadBody
        (ApproveLinkRequest.self, 0),  // ciphertextBody
        (PushSubscriptionRequest.self, 0),  // pushSubscriptionBody
        (ClientFrame.self, ClientFrameDecoding.maxAckIds),  // a frame
        (PreKeyBundleBatchRequest.self, 500),  // bundleBatchBody: maxGroupMembers accounts
    ]

    static func request(_ data: [UInt8]) -> FuzzOutcome {
        guard let selector = data.first else { return .rejected("empty") }
        let (type, maxArrayElements) = requestTypes[Int(selector) % requestTypes.count]
        return roundTrip(type, Array(data.dropFirst()), JSONParseLimits(maxArrayElements: maxArrayElements))
    }

    static func roundTrip<T: Codable>(_ type: T.Type, _ body: [UInt8], _ limits: JSONParseLimits) -> FuzzOutcome {
        let value: T
        do { value = try StrictWireDecoder.decode(T.self, bytes: body, limits: limits) } catch { return .rejected(error.kind) }
        guard let encoded = try? WireCoding.encoder().encode(value) else { return .violation("a decoded \(T.self) does not encode") }
        guard let again = try? StrictWireDecoder.decode(T.self, from: encoded, limits: limits) else {
            return .violation("a re-encoded \(T.self) is refused")
        }
        guard let first = try? WireCoding.encoder().encode(again), first == encoded else {
            return .violation("\(T.self) does not survive re-encoding")
        }
        return .accepted("\(T.self)")
    }
}
