import ParleyCrypto
import ParleyProtocol

/// The four wire-message parsers and the two record decoders. Invariants: an accepted message keeps
/// the exact bytes it was parsed from and parses again to the same fields; an accepted record
/// re-encodes to bytes that decode and re-encode to the same bytes (encoding is a fixed point).
enum MessageParserTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "signal-message", summary: "SignalMessage parser", body: signalMessage),
        FuzzTarget(name: "prekey-message", summary: "PreKeySignalMessage parser", body: preKeyMessage),
        FuzzTarget(name: "sender-key-message", summary: "SenderKeyMessage parser", body: senderKeyMessage),
        FuzzTarget(name: "distribution-message", summary: "SenderKeyDistributionMessage parser", body: distributionMessage),
        FuzzTarget(name: "session-record", summary: "SessionRecord decoder: re-encoding is a fixed point", body: sessionRecord),
        FuzzTarget(name: "sender-key-record", summary: "SenderKeyRecord decoder: re-encoding is a fixed point", body: senderKeyRecord),
    ]

    static func signalMessage(_ data: [UInt8]) -> FuzzOutcome {
        let message: SignalMessage
        do { message = try SignalMessage(serialized: data) } catch { return .rejected(error.kind) }
        guard message.serialized == data else { return .violation("SignalMessage does not keep its bytes") }
        guard let again = try? SignalMessage(serialized: message.serialized), again.counter == message.counter,
              again.previousCounter == message.previousCounter, again.senderRatchetKey == message.senderRatchetKey
        else { return .violation("SignalMessage does not parse to the same fields twice") }
        return .accepted("counter=\(message.counter) previous=\(message.previousCounter)")
    }

    static func preKeyMessage(_ data: [UInt8]) -> FuzzOutcome {
        let message: PreKeySignalMessage
        do { message = try PreKeySignalMessage(serialized: data) } catch { return .rejected(error.kind) }
        guard message.serialized == data else { return .violation("PreKeySignalMessage does not keep its bytes") }
        guard (try? SignalMessage(serialized: message.message.serialized)) != nil else {
            return .violation("the inner SignalMessage of an accepted PreKeySignalMessage does not parse on its own")
        }
        let preKey = message.preKeyId.map(String.init) ?? "none"
        return .accepted("prekey=\(preKey) signed=\(message.signedPreKeyId) counter=\(message.message.counter)")
    }

    static func senderKeyMessage(_ data: [UInt8]) -> FuzzOutcome {
        let message: SenderKeyMessage
        do { message = try SenderKeyMessage(serialized: data) } catch { return .rejected(error.kind) }
        guard message.serialized == data else { return .violation("SenderKeyMessage does not keep its bytes") }
        return .accepted("key=\(message.keyId) iteration=\(message.iteration)")
    }

    static func distributionMessage(_ data: [UInt8]) -> FuzzOutcome {
        let message: SenderKeyDistributionMessage
        do { message = try SenderKeyDistributionMessage(serialized: data) } catch { return .rejected(error.kind) }
        guard message.serialized == data, message.chainKey.count == 32 else {
            return .violation("SenderKeyDistributionMessage accepted with a chain key of \(message.chainKey.count) bytes")
        }
        return .accepted("key=\(message.keyId) iteration=\(message.iteration)")
    }

    static func sessionRecord(_ data: [UInt8]) -> FuzzOutcome {
        let record: SessionRecord
        do { record = try SessionRecord(serialized: data) } catch { return .rejected(error.kind) }
        guard let first = try? record.serialized() else { return .violation("a decoded SessionRecord does not encode") }
        guard let again = try? SessionRecord(serialized: first), let second = try? again.serialized(), second == first else {
            return .violation("SessionRecord encoding is not a fixed point")
        }
        return .accepted(record.hasCurrentSession ? "current" : "no-current")
    }

    static func senderKeyRecord(_ data: [UInt8]) -> FuzzOutcome {
        let record: SenderKeyRecord
        do { record = try SenderKeyRecord(serialized: data) } catch { return .rejected(error.kind) }
        guard let first = try? record.serialized() else { return .violation("a decoded SenderKeyRecord does not encode") }
        guard let again = try? SenderKeyRecord(serialized: first), let second = try? again.serialized(), second == first,
              again.keyIds == record.keyIds
        else { return .violation("SenderKeyRecord encoding is not a fixed point") }
        return .accepted("keys=\(record.keyIds.count)")
    }
}

extension Error {
    /// The stable name of a typed error, for outcomes: `ProtocolError.kind`, else the enum case's
    /// name (without its payload or description, which may change wording).
    var kind: String {
        if let error = self as? ProtocolError { return error.kind }
        if let label = Mirror(reflecting: self).children.first?.label { return label }
        let text = String(reflecting: self)
        return String(text.split(separator: ".").last ?? Substring(text))
    }
}
