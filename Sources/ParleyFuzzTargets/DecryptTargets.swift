import ParleyCrypto
import ParleyProtocol

/// Decryption against a real conversation's state (`ProtocolFixture`), on a fresh copy per input.
/// Invariants: a failed decrypt changes nothing (sessions, archived states, prekeys, identities,
/// sender keys); a successful one returns the plaintext of a genuine message not delivered before,
/// and a PreKeySignalMessage only decrypts under one of the base keys Alice really used (a
/// wrapper with another base key decrypting is issue 10's defect 1 or 2).
enum DecryptTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(
            name: "session-decrypt",
            summary: "1:1 decryption at Bob's (current and archived sessions, prekeys): failures change nothing",
            body: sessionDecrypt),
        FuzzTarget(
            name: "group-decrypt",
            summary: "sender-key decryption at a member with two key generations: failures change nothing",
            body: groupDecrypt),
    ]

    static func sessionDecrypt(_ data: [UInt8]) -> FuzzOutcome {
        guard let fixture = ProtocolFixture.shared else { return .violation("the fixture could not be built") }
        let bob = fixture.bob.copy()
        let alice = fixture.alice.address
        let before = bob.snapshot(peer: alice)
        // The envelope type a client would see: a PreKeySignalMessage if the bytes parse as one.
        let wrapper = try? PreKeySignalMessage(serialized: data)
        switch bob.decrypt(data, preKey: wrapper != nil, from: alice) {
        case .failure(let error):
            guard bob.snapshot(peer: alice) == before else { return .violation("a failed decrypt (\(error.kind)) changed Bob's state") }
            return .rejected(error.kind)
        case .success(let plaintext):
            let text = String(decoding: plaintext, as: UTF8.self)
            if let wrapper, !fixture.aliceBaseKeys.contains(wrapper.baseKey.serialized) {
                var canonical = wrapper.baseKey.serialized
                canonical[32] &= 0x7F
                if fixture.aliceBaseKeys.contains(canonical) {
                    return .violation("issue 10 defect 2: a base key with bit 255 set decrypted again (\(text))")
                }
                return .violation("issue 10 defect 1: a PreKeySignalMessage with a base key Alice never used decrypted (\(text))")
            }
            if fixture.delivered.contains(text) { return .violation("a delivered message decrypted again (\(text))") }
            guard fixture.pending.contains(where: { $0.label == text }) else {
                return .violation("decrypted to a plaintext Alice never sent")
            }
            return .accepted(text)
        }
    }

    static func groupDecrypt(_ data: [UInt8]) -> FuzzOutcome {
        guard let fixture = ProtocolFixture.shared else { return .violation("the fixture could not be built") }
        let member = fixture.member.copy()
        let before = member.snapshot(peer: fixture.carol.address, group: fixture.groupName)
        let result: Result<[UInt8], ProtocolError>
        do {
            let message = try SenderKeyMessage(serialized: data)
            result = .success(try GroupCipher.decrypt(message, from: fixture.groupName, store: member.store))
        } catch let error as ProtocolError {
            result = .failure(error)
        } catch {
            result = .failure(.corruptState("\(error)"))
        }
        switch result {
        case .failure(let error):
            guard member.snapshot(peer: fixture.carol.address, group: fixture.groupName) == before else {
                return .violation("a failed group decrypt (\(error.kind)) changed the member's state")
            }
            return .rejected(error.kind)
        case .success(let plaintext):
            let text = String(decoding: plaintext, as: UTF8.self)
            if fixture.deliveredGroup.contains(text) { return .violation("a delivered group message decrypted again (\(text))") }
            guard fixture.pendingGroup.contains(where: { $0.label == text }) else {
                return .violation("decrypted to a group plaintext Carol never sent")
            }
            return .accepted(text)
        }
    }
}
