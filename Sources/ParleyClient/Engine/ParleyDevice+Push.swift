import Foundation
import ParleyWire

/// Where this device stands with Web Push (`ParleyDevice.pushStatus`).
public struct PushStatus: Sendable, Equatable {
    /// The registration the store records (nil: not registered).
    public let registration: PushRegistration?
    /// The relay's VAPID key this device accepted (nil: never fetched).
    public let pinnedKey: VAPIDPublicKey?
    /// The relay's key as fetched now, checked; nil when it could not be fetched (`relayKeyProblem`).
    public let relayKey: VAPIDPublicKey?
    /// Why the relay's key could not be fetched or was refused (one line), else nil.
    public let relayKeyProblem: String?

    /// The relay now signs with another key than the pinned one: the registration (made for the pinned key)
    /// no longer works and must be made again (`PushError.vapidKeyChanged`).
    public var keyChanged: Bool {
        guard let pinnedKey, let relayKey else { return false }
        return pinnedKey != relayKey
    }
}

/// Web Push for this device (Specs/client.md §"Push notifications"): the relay pushes, content-free, to a
/// registered endpoint while the device has no open connection and messages wait for it; the device then
/// connects and fetches them as always.
///
/// The relay's VAPID key is fetched from the relay, checked (`VAPIDPublicKey`) and pinned at first use. A
/// subscription is bound at its push service to the key it was created with, so a key that later differs is
/// never taken silently: `registerPush` refuses it (`PushError.vapidKeyChanged`) unless the caller says the new
/// subscription was made for the new key (`acceptNewRelayKey`), and `pushStatus` reports it.
extension ParleyDevice {
    /// The relay's VAPID key (to create a subscription with, as `applicationServerKey`), checked. The first key
    /// fetched is pinned; a key that differs from the pinned one throws `PushError.vapidKeyChanged`.
    public func relayVAPIDKey() async throws -> VAPIDPublicKey {
        let key = try await relay.vapidKey()
        if let pinned = try store.pinnedVAPIDKey() {
            guard pinned == key else { throw PushError.vapidKeyChanged(pinned: pinned.base64URL, current: key.base64URL) }
        } else {
            try store.pinVAPIDKeyIfNone(key)
        }
        return key
    }

    /// Registers `subscription`'s endpoint at the relay (replacing an earlier one) and records it with the relay's
    /// key. Throws, leaving the store as it was: `PushError` (subscription or relay key not valid, the key changed
    /// and `acceptNewRelayKey` is false, the endpoint refused by the relay's policy, no push at the relay, rate
    /// limited), `ClientError.deviceRemoved`, or a transport error.
    @discardableResult
    public func registerPush(_ subscription: WebPushSubscription, acceptNewRelayKey: Bool = false) async throws -> PushRegistration {
        guard !removedFromAccount else { throw ClientError.deviceRemoved }
        let key = try await relay.vapidKey()
        if let pinned = try store.pinnedVAPIDKey(), pinned != key, !acceptNewRelayKey {
            throw PushError.vapidKeyChanged(pinned: pinned.base64URL, current: key.base64URL)
        }
        do {
            try await relay.registerPush(endpoint: subscription.endpoint)
        } catch RelayClientError.deviceRemoved {
            removedFromAccount = true
            throw RelayClientError.deviceRemoved
        }
        let now = Self.nowMillis()
        try store.savePushRegistration(endpoint: subscription.endpoint, key: key, at: now)
        return PushRegistration(endpoint: subscription.endpoint, vapidKey: key, registeredAt: now)
    }

    /// Stops pushes to this device: `DELETE /v1/push` at the relay, then the registration is forgotten here (the
    /// pinned key stays). Returns the registration that was removed (nil: none was recorded; the relay is asked
    /// anyway). A device removed from its account has no endpoint at the relay any more: its registration is
    /// forgotten and `RelayClientError.deviceRemoved` thrown. Other failures leave the registration recorded.
    @discardableResult
    public func unregisterPush() async throws -> PushRegistration? {
        let existing = try store.pushRegistration()
        do {
            try await relay.unregisterPush()
        } catch RelayClientError.deviceRemoved {
            removedFromAccount = true
            try store.removePushRegistration()
            throw RelayClientError.deviceRemoved
        }
        try store.removePushRegistration()
        return existing
    }

    /// The recorded registration (no network).
    public nonisolated func pushRegistration() throws -> PushRegistration? { try store.pushRegistration() }

    /// The recorded registration and pinned key, and the relay's key as fetched now (a problem fetching it is
    /// reported in `relayKeyProblem`, not thrown). Pins the relay's key when none is pinned yet.
    public func pushStatus() async throws -> PushStatus {
        let registration = try store.pushRegistration()
        var relayKey: VAPIDPublicKey?
        var problem: String?
        do {
            relayKey = try await relay.vapidKey()
        } catch {
            problem = TransportFailure.reason(error).map { "cannot reach the relay: \($0)" } ?? "\(error)"
        }
        if let relayKey { try store.pinVAPIDKeyIfNone(relayKey) }
        return PushStatus(registration: registration, pinnedKey: try store.pinnedVAPIDKey(), relayKey: relayKey, relayKeyProblem: problem)
    }
}
