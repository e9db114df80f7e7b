import Foundation
import ParleyProtocol
import ParleyWire

/// What a running device reports to its user interface, in the order it happened.
public enum ClientEvent: Sendable, Equatable {
    /// A message was added to the history: received, sent from another of this account's devices,
    /// a group notice ("alice added dave"), or a repaired message that replaced its placeholder
    /// (same `id`, same place).
    case message(StoredMessage)
    /// A placeholder was removed from the history: its repair showed that the envelope carried
    /// nothing to show (a receipt, a sender key, a title), or the message was stored already.
    case removed(MessageID)
    /// An envelope from `sender` did not decrypt; it is recorded in the history as such and the
    /// session is being repaired (`reason` is the protocol error kind).
    case undecryptable(sender: ProtocolAddress, reason: String)
    /// An outgoing message moved to `status` for `recipient`.
    case status(messageUid: String, recipient: String, status: DeliveryStatus)
    case presence(account: String, online: Bool, lastSeen: Int64?)
    case typing(account: String, deviceId: UInt32, groupId: String?, started: Bool)
    /// A contact's identity key changed. `accepted` is false when the contact was verified: the
    /// new key is refused until the user re-verifies (`trustNewIdentity`).
    case identityChanged(account: String, accepted: Bool)
    /// A group's members, admins or title changed (the history has the notice as a `message`).
    case groupChanged(groupId: String)
    /// The WebSocket is up; the backlog follows.
    case connected
    /// The backlog queued while this device was offline has been processed.
    case backlogDrained
    case disconnected(reason: String)
    /// An outbox entry could not be sent and was given up (`reason` says why).
    case sendFailed(destination: String, reason: String)
}

/// Why the outbox stopped with entries still queued (they go with a later flush).
public enum SendDeferral: Sendable, Equatable, CustomStringConvertible {
    /// The relay answered `429` and asked for a longer wait than a request waits (`RateLimitPolicy`).
    case rateLimited(retryAfterSeconds: Int)
    /// No answer from the relay (connection refused, timeout, TLS failure): `reason` says which, in a few
    /// words where it is a known transport failure ("connection refused"; `TransportFailure`).
    case relayUnreachable(String)
    /// The relay answered but could not take the message now (a full queue, `5xx`, a group changing under
    /// the send): `reason` says what.
    case relayBusy(String)

    public var description: String {
        switch self {
        case .rateLimited(let seconds): return "rate limited by the relay; retry in \(seconds) s"
        case .relayUnreachable: return "relay unreachable"
        case .relayBusy(let reason): return "relay busy: \(reason)"
        }
    }

    /// Classifies a transient send failure.
    static func of(_ error: any Error) -> SendDeferral {
        switch error {
        case RelayClientError.rateLimited(let seconds, _): return .rateLimited(retryAfterSeconds: seconds)
        case let error as RelayClientError: return .relayBusy("\(error)")
        case let error as ClientError: return .relayBusy(error.description)
        default: return .relayUnreachable(TransportFailure.reason(error) ?? "\(error)")
        }
    }
}

/// Why a client operation failed.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The store has no relay account (registration did not finish).
    case notRegistered
    case unknownGroup(String)
    case notAGroupMember(String)
    /// The contact is verified and its identity key changed: nothing is sent until re-verified.
    case identityChanged(account: String)
    /// The relay knows no device of this account.
    case noDevices(account: String)
    /// The relay kept refusing the device list after repairs.
    case deviceListUnsettled(account: String)
    /// The group kept changing while a message to it was being sent; it stays queued.
    case groupUnsettled(String)
    /// A parameter is not acceptable (`what` says which).
    case invalidArgument(String)
    /// The relay knows no account of this name (nothing was stored: no contact, no message).
    case unknownAccount(String)
    /// A message with no text (empty or only white space) is not sent.
    case emptyMessage
    /// The text is longer than `ParleyDevice.maxMessageTextBytes` (UTF-8 bytes).
    case messageTooLong(bytes: Int, limit: Int)
    /// The link or registration step failed at the relay.
    case relay(RelayClientError)
    /// This device removed itself from its account (or the relay refused its credential): it sends nothing.
    case deviceRemoved

    public var description: String {
        switch self {
        case .notRegistered: return "this device is not registered (run `parley register`)"
        case .unknownGroup(let id): return "unknown group \(id)"
        case .notAGroupMember(let id): return "not a member of group \(id)"
        case .identityChanged(let account):
            return "the safety number with \(account) changed and \(account) was verified: compare safety numbers, then trust the new key"
        case .noDevices(let account): return "\(account) has no devices"
        case .deviceListUnsettled(let account): return "the device list of \(account) kept changing; try again"
        case .groupUnsettled(let id): return "the members of group \(id) kept changing; the message stays queued"
        case .invalidArgument(let what): return what
        case .unknownAccount(let name): return "no account named \(name) at the relay (nothing was sent)"
        case .emptyMessage: return "refusing to send an empty message"
        case .messageTooLong(let bytes, let limit):
            return "the message is \(bytes) bytes; the limit is \(limit) bytes (\(limit / 1024) KiB) of UTF-8 text"
        case .relay(let error): return "relay: \(error)"
        case .deviceRemoved: return "this device was removed from the account"
        }
    }
}
