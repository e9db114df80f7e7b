import Foundation
import ParleyCrypto
import ParleyProtocol

/// One party of the live interop round trip (Specs/interop.md): reads one JSON request per line
/// on standard input and answers one JSON line on standard output. Real randomness, in-memory
/// stores, device id 1 for every address. python-axolotl speaks version 3 only, so this peer
/// runs under `SessionPolicy.allowClassical` (new sessions are X3DH) and uses the old Sender Key
/// layout.
public final class InteropPeer {
    private var store: InMemoryProtocolStore?
    private var name = ""
    private var signedPreKey: SignedPreKeyRecord?
    private var preKey: PreKeyRecord?

    public init() {}

    public func serve() {
        while let line = readLine(strippingNewline: true) {
            if line.isEmpty { continue }
            let (response, quit) = handle(line)
            if let data = try? JSONSerialization.data(withJSONObject: response, options: [.sortedKeys]),
               let text = String(data: data, encoding: .utf8) {
                FileHandle.standardOutput.write(Data((text + "\n").utf8))
            }
            if quit { return }
        }
    }

    func handle(_ line: String) -> ([String: Any], Bool) {
        do {
            guard let data = line.data(using: .utf8) else { throw VectorError.mismatch("not UTF-8") }
            let request = try JSONValue.parse(data)
            let op = try request["op"].string()
            if op == "quit" { return (["ok": true], true) }
            var response = try perform(op, request)
            response["ok"] = true
            return (response, false)
        } catch let error as ProtocolError {
            return (["ok": false, "error": error.kind, "detail": "\(error)"], false)
        } catch {
            return (["ok": false, "error": "invalid_request", "detail": "\(error)"], false)
        }
    }

    private func requireStore() throws -> InMemoryProtocolStore {
        guard let store else { throw VectorError.mismatch("init first") }
        return store
    }

    private func perform(_ op: String, _ r: JSONValue) throws -> [String: Any] {
        switch op {
        case "init":
            name = try r["name"].string()
            let identity = try IdentityKeyPair.generate()
            let store = InMemoryProtocolStore(identity: identity, registrationId: try r["registration_id"].uint32())
            let signed = try SignedPreKeyRecord.generate(id: try r["signed_prekey_id"].uint32(), identity: identity, timestamp: 0)
            let oneTime = PreKeyRecord(id: try r["prekey_id"].uint32(), keyPair: try PrivateKey.generate(using: SystemRandom.shared))
            store.storeSignedPreKey(signed)
            store.storePreKey(oneTime)
            self.store = store
            self.signedPreKey = signed
            self.preKey = oneTime
            return [:]
        case "bundle":
            let store = try requireStore()
            guard let signed = signedPreKey else { throw VectorError.mismatch("init first") }
            let withPreKey = (try? r["with_prekey"].bool()) ?? true
            var out: [String: Any] = [
                "registration_id": store.localRegistrationId(), "device_id": 1,
                "identity_key": store.identityKeyPair().identityKey.serialized.hexString,
                "signed_prekey_id": signed.id, "signed_prekey": signed.keyPair.publicKey.serialized.hexString,
                "signed_prekey_signature": signed.signature.hexString,
                "prekey_id": NSNull(), "prekey": NSNull(),
            ]
            if withPreKey, let preKey {
                out["prekey_id"] = preKey.id
                out["prekey"] = preKey.keyPair.publicKey.serialized.hexString
            }
            return out
        case "process_bundle":
            let store = try requireStore()
            let b = r["bundle"]
            var preKeyId: UInt32? = nil
            var preKey: PublicKey? = nil
            if b["prekey"].exists {
                preKeyId = try b["prekey_id"].uint32()
                preKey = try PublicKey(serialized: try b["prekey"].hex())
            }
            let bundle = PreKeyBundle(
                registrationId: try b["registration_id"].uint32(), deviceId: 1,
                identityKey: try IdentityKey(serialized: try b["identity_key"].hex()),
                signedPreKeyId: try b["signed_prekey_id"].uint32(),
                signedPreKey: try PublicKey(serialized: try b["signed_prekey"].hex()),
                signedPreKeySignature: try b["signed_prekey_signature"].hex(), preKeyId: preKeyId, preKey: preKey)
            // python-axolotl publishes no Kyber prekey: these sessions are X3DH (version 3).
            try SessionBuilder.process(bundle: bundle, for: address(try r["peer"].string()), store: store, policy: .allowClassical)
            return [:]
        case "encrypt":
            let store = try requireStore()
            let out = try SessionCipher.encrypt(try r["plaintext"].hex(), for: address(try r["peer"].string()), store: store)
            return ["type": out.type, "ciphertext": out.serialized.hexString]
        case "decrypt":
            let store = try requireStore()
            let peer = address(try r["peer"].string())
            let bytes = try r["ciphertext"].hex()
            let plaintext: [UInt8]
            if try r["type"].int() == 3 {
                plaintext = try SessionCipher.decrypt(
                    try PreKeySignalMessage(serialized: bytes), from: peer, store: store, policy: .allowClassical)
            } else {
                plaintext = try SessionCipher.decrypt(try SignalMessage(serialized: bytes), from: peer, store: store)
            }
            return ["plaintext": plaintext.hexString]
        case "group_create":
            let store = try requireStore()
            let key = SenderKeyName(groupId: try r["group"].string(), sender: address(name))
            return ["distribution": try GroupCipher.createDistributionMessage(for: key, store: store).serialized.hexString]
        case "group_process":
            let store = try requireStore()
            let key = SenderKeyName(groupId: try r["group"].string(), sender: address(try r["sender"].string()))
            try GroupCipher.process(try SenderKeyDistributionMessage(serialized: try r["distribution"].hex()), for: key, store: store)
            return [:]
        case "group_encrypt":
            let store = try requireStore()
            let key = SenderKeyName(groupId: try r["group"].string(), sender: address(name))
            return ["ciphertext": try GroupCipher.encrypt(try r["plaintext"].hex(), for: key, store: store).serialized.hexString]
        case "group_decrypt":
            let store = try requireStore()
            let key = SenderKeyName(groupId: try r["group"].string(), sender: address(try r["sender"].string()))
            let message = try SenderKeyMessage(serialized: try r["ciphertext"].hex())
            return ["plaintext": try GroupCipher.decrypt(message, from: key, store: store).hexString]
        default:
            throw VectorError.mismatch("unknown op \(op)")
        }
    }

    private func address(_ name: String) -> ProtocolAddress { ProtocolAddress(name: name, deviceId: 1) }
}
