import Foundation
import ParleyWire

/// The relay's decoders of what clients send: request bodies (`StrictWireDecoder`, every HTTP route)
/// and WebSocket frames (`FastFrameDecoder` for `ack`/`send`, else the strict decoder).
/// Invariants: the fast decoder accepts only what the strict one accepts, with the same value; an
/// accepted request re-encodes to JSON the strict decoder accepts again as the same value.
enum WireTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "wire-frame", summary: "client frames: fast decoder ⊆ strict decoder, same value", body: frame),
        FuzzTarget(name: "wire-request", summary: "request bodies (first byte picks the type): strict decoding round-trips", body: request),
    ]

    static func frame(_ data: [UInt8]) -> FuzzOutcome {
        let fast = FastFrameDecoder.decodeClientFrame(data)
        let strict: ClientFrame
        do {
            strict = try StrictWireDecoder.decode(ClientFrame.self, from: Data(data))
        } catch {
            if fast != nil { return .violation("the fast decoder accepted a frame the strict decoder refuses (\(error))") }
            return .rejected(error.kind)
        }
        if let fast, fast != strict { return .violation("the fast and strict decoders disagree on a frame") }
        return .accepted("\(strict.type.rawValue)\(fast == nil ? "" : " fast")")
    }

    /// The request bodies the relay decodes, one per route that takes a body.
    /// Metatypes only: immutable, safe to share.
    nonisolated(unsafe) static let requestTypes: [any Codable.Type] = [
        RegisterAccountRequest.self, SendMessageRequest.self, UploadPreKeysRequest.self, CreateGroupRequest.self,
        GroupMembersRequest.self, SendGroupMessageRequest.self, ClaimLinkRequest.self, ApproveLinkRequest.self,
        PushSubscriptionRequest.self, ClientFrame.self,
    ]

    static func request(_ data: [UInt8]) -> FuzzOutcome {
        guard let selector = data.first else { return .rejected("empty") }
        let type = requestTypes[Int(selector) % requestTypes.count]
        return roundTrip(type, Data(data.dropFirst()))
    }

    static func roundTrip<T: Codable>(_ type: T.Type, _ body: Data) -> FuzzOutcome {
        let value: T
        do { value = try StrictWireDecoder.decode(T.self, from: body) } catch { return .rejected(error.kind) }
        guard let encoded = try? WireCoding.encoder().encode(value) else { return .violation("a decoded \(T.self) does not encode") }
        guard let again = try? StrictWireDecoder.decode(T.self, from: encoded) else {
            return .violation("a re-encoded \(T.self) is refused")
        }
        guard let first = try? WireCoding.encoder().encode(again), first == encoded else {
            return .violation("\(T.self) does not survive re-encoding")
        }
        return .accepted("\(T.self)")
    }
}
