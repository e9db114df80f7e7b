import Foundation
import GRDB
import ParleyClient
import ParleyCrypto
import ParleyProtocol

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "parley-client-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw TestFailure("mkdtemp failed")
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A stepping clock: every read is one millisecond after the previous one.
final class SteppingClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 1_700_000_000_000

    var clock: StoreClock {
        { [self] in
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }
}

/// The passphrase used by sealed test stores (cheap Argon2id parameters keep the tests fast).
let testPassphrase = Passphrase("correct horse battery staple")

/// A device under test: its address, identity and store.
struct TestDevice {
    let address: ProtocolAddress
    let identity: IdentityKeyPair
    let registrationId: UInt32
    let path: String
    var store: DeviceStore
    let passphrase: Passphrase?

    static func create(
        name: String, deviceId: UInt32 = 1, in directory: TemporaryDirectory, sealed: Bool
    ) throws -> TestDevice {
        let identity = try IdentityKeyPair.generate()
        let registrationId = UInt32.random(in: 1...16380)
        let path = directory.file("\(name).\(deviceId).sqlite")
        let passphrase = sealed ? testPassphrase : nil
        let store = try DeviceStore.create(
            at: path, identity: identity, registrationId: registrationId, passphrase: passphrase, cost: .interactive)
        return TestDevice(
            address: ProtocolAddress(name: name, deviceId: deviceId), identity: identity, registrationId: registrationId,
            path: path, store: store, passphrase: passphrase)
    }

    /// Closes the store and opens the file again: everything after this comes from disk.
    mutating func reopen() throws {
        try store.close()
        store = try DeviceStore.open(at: path, passphrase: passphrase)
    }

    /// Generates and stores a signed prekey, one one-time prekey and a last-resort Kyber prekey; returns the
    /// bundle a peer would fetch from the relay (a version-4 session is made from it).
    func publishBundle(preKeyId: UInt32 = 7, signedPreKeyId: UInt32 = 3, kyberPreKeyId: UInt32 = 5) throws -> PreKeyBundle {
        let signed = try SignedPreKeyRecord.generate(id: signedPreKeyId, identity: identity, timestamp: 1_700_000_000)
        let oneTime = PreKeyRecord(id: preKeyId, keyPair: try PrivateKey.generate(using: SystemRandom.shared))
        let kyber = try KyberPreKeyRecord.generate(id: kyberPreKeyId, identity: identity, timestamp: 1_700_000_000, lastResort: true)
        try store.storeSignedPreKey(signed)
        try store.storePreKey(oneTime)
        try store.storeKyberPreKey(kyber)
        return PreKeyBundle(
            registrationId: registrationId, deviceId: address.deviceId, identityKey: identity.identityKey,
            signedPreKeyId: signed.id, signedPreKey: signed.keyPair.publicKey, signedPreKeySignature: signed.signature,
            preKeyId: oneTime.id, preKey: oneTime.keyPair.publicKey,
            kyberPreKey: PreKeyBundle.KyberPreKey(id: kyber.id, publicKey: kyber.keyPair.publicKey, signature: kyber.signature))
    }
}

/// Decrypts a serialized pairwise message of either type, as the client's receive path will.
func decrypt(_ message: CiphertextMessage, from sender: ProtocolAddress, store: DeviceStore) throws -> String {
    let plaintext: [UInt8]
    switch message {
    case .preKey(let m):
        plaintext = try SessionCipher.decrypt(try PreKeySignalMessage(serialized: m.serialized), from: sender, store: store)
    case .signal(let m):
        plaintext = try SessionCipher.decrypt(try SignalMessage(serialized: m.serialized), from: sender, store: store)
    }
    return String(decoding: plaintext, as: UTF8.self)
}

func encrypt(_ text: String, to recipient: ProtocolAddress, store: DeviceStore) throws -> CiphertextMessage {
    try SessionCipher.encrypt(Array(text.utf8), for: recipient, store: store)
}

/// The bytes of a file, or empty when it does not exist.
func fileBytes(_ path: String) -> [UInt8] {
    (FileManager.default.contents(atPath: path)).map { Array($0) } ?? []
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in these bytes.
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        let first = needle[0]
        var i = 0
        let last = count - needle.count
        while i <= last {
            if self[i] == first, Array(self[i..<(i + needle.count)]) == needle { return true }
            i += 1
        }
        return false
    }
}

/// Opens the store file directly, as someone holding the file (not the passphrase) would.
func withRawDatabase<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
    let queue = try DatabaseQueue(path: path)
    defer { try? queue.close() }
    return try queue.writeWithoutTransaction { db in try body(db) }
}

/// Every row of every table of the store file, as text: what "the store is unchanged" compares (SQLite may
/// reorganise pages on an open that writes no row).
func storeRows(_ path: String) throws -> [String] {
    try withRawDatabase(path) { db in
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return try tables.flatMap { table in
            try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"").map { "\(table): \($0)" }.sorted()
        }
    }
}
