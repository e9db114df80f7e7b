import ParleyCrypto
import Testing

/// Secrets Parley owns are overwritten when it is done with them (issue 10, defect 7): the
/// HMAC pad states (as good as the key) and a finished stream's copies of them.
@Suite struct WipeTests {
    static func isZero<T>(_ value: T) -> Bool {
        withUnsafeBytes(of: value) { $0.allSatisfy { $0 == 0 } }
    }

    @Test func hmacKeyStateIsWiped() {
        var mac = HMACSHA256(key: [UInt8](repeating: 0x5A, count: 32))
        #expect(!Self.isZero(mac))
        let before = mac.authenticate([1, 2, 3])
        mac.wipe()
        #expect(Self.isZero(mac))
        #expect(before == HMACSHA256.mac(key: [UInt8](repeating: 0x5A, count: 32), data: [1, 2, 3]))
    }

    @Test func finishedStreamHoldsNoPadState() {
        let mac = HMACSHA256(key: [UInt8](repeating: 0xA5, count: 32))
        var stream = mac.start()
        stream.update([9, 9, 9])
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { stream.finish(into: $0) }
        #expect(Self.isZero(stream))
        #expect(out == mac.authenticate([9, 9, 9]))
    }

    @Test func secretBytesWipeHelper() {
        var buffer: [UInt8] = [1, 2, 3, 4]
        buffer.withUnsafeMutableBytes { SecretBytes.wipe($0) }
        #expect(buffer == [0, 0, 0, 0])
    }
}
