import Foundation
import ParleyCrypto
import ParleyFormats
import ParleyProtocol

/// The client's parsers of data that arrives from others: a scanned safety-number code, a link
/// string (typed or scanned), the provisioning payload and its history archive (from the device
/// that approves a link), and the content inside every decrypted message. Invariants: what is
/// accepted re-encodes and parses back to the same value; a scanned code matches at most one peer.
enum ClientFormatTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "safety-number", summary: "scanned safety-number codes: a code matches at most one peer", body: safetyNumber),
        FuzzTarget(name: "link-string", summary: "link strings: accepted text is canonical and reparses", body: linkString),
        FuzzTarget(
            name: "provisioning-payload", summary: "provisioning payloads: decode(encode(decode(x))) == decode(x)",
            body: provisioningPayload),
        FuzzTarget(name: "history-archive", summary: "history archives: decode(encode(decode(x))) == decode(x)", body: historyArchive),
        FuzzTarget(name: "message-content", summary: "padded message content: decode(encode(decode(x))) == decode(x)", body: messageContent),
    ]

    // MARK: safety numbers

    /// Alice's safety numbers with Bob and with Carol (computed once: 5,200 SHA-512 rounds each).
    struct SafetyNumbers {
        let aliceBob: SafetyNumber
        let bobAlice: SafetyNumber
        let aliceCarol: SafetyNumber
        let carolAlice: SafetyNumber

        static let shared: SafetyNumbers? = {
            let random = DeterministicRandom(seed: 21)
            guard let alice = try? IdentityKeyPair.generate(using: random).identityKey,
                let bob = try? IdentityKeyPair.generate(using: random).identityKey,
                let carol = try? IdentityKeyPair.generate(using: random).identityKey,
                let aliceBob = try? SafetyNumber(localId: Array("alice".utf8), localKey: alice, remoteId: Array("bob".utf8), remoteKey: bob),
                let bobAlice = try? SafetyNumber(localId: Array("bob".utf8), localKey: bob, remoteId: Array("alice".utf8), remoteKey: alice),
                let aliceCarol = try? SafetyNumber(
                    localId: Array("alice".utf8), localKey: alice, remoteId: Array("carol".utf8), remoteKey: carol),
                let carolAlice = try? SafetyNumber(
                    localId: Array("carol".utf8), localKey: carol, remoteId: Array("alice".utf8), remoteKey: alice)
            else { return nil }
            return SafetyNumbers(aliceBob: aliceBob, bobAlice: bobAlice, aliceCarol: aliceCarol, carolAlice: carolAlice)
        }()
    }

    /// Alice scans `data` (Bob's code, Carol's code, or anything else).
    static func safetyNumber(_ data: [UInt8]) -> FuzzOutcome {
        guard let numbers = SafetyNumbers.shared else { return .violation("the safety numbers could not be computed") }
        let withBob: Bool, withCarol: Bool
        do {
            withBob = try numbers.aliceBob.matches(scanned: data)
            withCarol = try numbers.aliceCarol.matches(scanned: data)
        } catch {
            return .rejected(error.kind)
        }
        if withBob && withCarol { return .violation("one scanned code matched two different peers") }
        return .accepted(withBob ? "matches bob" : withCarol ? "matches carol" : "no match")
    }

    // MARK: link strings

    static func linkString(_ data: [UInt8]) -> FuzzOutcome {
        let text = String(decoding: data, as: UTF8.self)
        let link: LinkString
        do { link = try LinkString(parsing: text) } catch { return .rejected(error.kind) }
        guard link.text == text.trimmingCharacters(in: .whitespacesAndNewlines) else {
            return .violation("an accepted link string is not in its canonical form")
        }
        guard (try? LinkString(parsing: link.text)) == link else { return .violation("a link string does not reparse to itself") }
        return .accepted("")
    }

    // MARK: provisioning payloads and history archives

    static func provisioningPayload(_ data: [UInt8]) -> FuzzOutcome {
        let payload: ProvisioningPayload
        do { payload = try ProvisioningPayload.decode(SecretBytes(copying: data)) } catch { return .rejected(error.kind) }
        guard let encoded = try? payload.encode().bytes else { return .violation("a decoded payload does not encode") }
        guard let again = try? ProvisioningPayload.decode(encoded) else { return .violation("a re-encoded payload does not decode") }
        guard again.accountName == payload.accountName, again.identity.identityKey == payload.identity.identityKey,
            again.existingDeviceId == payload.existingDeviceId, again.contacts == payload.contacts,
            again.identities == payload.identities, again.archive == payload.archive, again.historyUpload == payload.historyUpload
        else { return .violation("a payload does not survive re-encoding") }
        return .accepted(
            "contacts=\(payload.contacts.count) identities=\(payload.identities.count) "
                + "conversations=\(payload.archive.conversations.count) messages=\(payload.archive.messages.count)")
    }

    static func historyArchive(_ data: [UInt8]) -> FuzzOutcome {
        let archive: HistoryArchive
        do { archive = try HistoryArchive.decode(data) } catch { return .rejected(error.kind) }
        guard let encoded = try? archive.encoded().copyBytes() else { return .violation("a decoded archive does not encode") }
        guard (try? HistoryArchive.decode(encoded)) == archive else { return .violation("an archive does not survive re-encoding") }
        return .accepted("conversations=\(archive.conversations.count) messages=\(archive.messages.count)")
    }

    // MARK: message content

    static func messageContent(_ data: [UInt8]) -> FuzzOutcome {
        let content: MessageContent
        do { content = try ContentCodec.decode(data) } catch { return .rejected(error.kind) }
        guard let body = content.body else { return .violation("content accepted without a body") }
        guard let encoded = try? ContentCodec.encode(content) else { return .violation("decoded content does not encode") }
        guard encoded.count % ContentCodec.blockSize == 0, (try? ContentCodec.decode(encoded)) == content else {
            return .violation("content does not survive re-encoding")
        }
        let kind: String
        switch body {
        case .data: kind = "data"
        case .receipt: kind = "receipt"
        case .typing: kind = "typing"
        case .sync: kind = "sync"
        case .decryptionError: kind = "decryption-error"
        case .senderKeyDistribution: kind = "sender-key-distribution"
        case .resendUnavailable: kind = "resend-unavailable"
        }
        return .accepted(kind)
    }
}
