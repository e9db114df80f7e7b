import CSodium

/// Fixed-length secret key material, wiped with `sodium_memzero` when the last reference goes
/// away. Immutable after initialisation, so copies of a session state share it safely and
/// cheaply; a new key is a new `SecretBytes`. The bytes live in the same heap block as their
/// header (one allocation per secret).
///
/// Swift may still leave copies of secrets in registers or in arrays a caller made with
/// `copyBytes()`; this type makes sure the long-lived copies are wiped.
public struct SecretBytes: @unchecked Sendable {
    @usableFromInline
    final class Storage: ManagedBuffer<Int, UInt8> {
        deinit {
            withUnsafeMutablePointers { count, bytes in
                if count.pointee > 0 { sodium_memzero(bytes, count.pointee) }
            }
        }
    }

    @usableFromInline let storage: Storage

    public var count: Int { storage.header }

    /// Allocates `count` zeroed bytes and lets `initializer` fill them.
    @inlinable
    public init<E: Error>(count: Int, _ initializer: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        let buffer = Storage.create(minimumCapacity: count) { _ in count }
        let storage = unsafeDowncast(buffer, to: Storage.self)
        try storage.withUnsafeMutablePointers { (_, bytes) throws(E) in
            bytes.initialize(repeating: 0, count: count)
            try initializer(UnsafeMutableRawBufferPointer(start: bytes, count: count))
        }
        self.storage = storage
    }

    /// Copies `bytes` into a new secret buffer.
    @inlinable
    public init<C: ByteView>(copying bytes: C) {
        self = bytes.withBytes { src in
            SecretBytes(count: src.count) { dst in
                if let s = src.baseAddress, let d = dst.baseAddress, src.count > 0 { d.copyMemory(from: s, byteCount: src.count) }
            }
        }
    }

    /// The secret's bytes, for the duration of `body` only.
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try storage.withUnsafeMutablePointers { (count, bytes) throws(E) -> R in
            try body(UnsafeRawBufferPointer(start: bytes, count: count.pointee))
        }
    }

    /// A plain copy of the bytes, for serialization. The caller owns (and should wipe) it.
    public func copyBytes() -> [UInt8] {
        withBytes { Array($0) }
    }

    /// Overwrites `buffer` with zeros in a way the compiler does not remove (`sodium_memzero`):
    /// for plain buffers that held a secret (a random draw, a serialization copy).
    public static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        if let base = buffer.baseAddress, buffer.count > 0 { sodium_memzero(base, buffer.count) }
    }

    /// A sub-range of the secret as a new secret.
    public func slice(_ range: Range<Int>) -> SecretBytes {
        withBytes { src in
            SecretBytes(copying: UnsafeRawBufferPointer(rebasing: src[range]))
        }
    }
}

extension SecretBytes: ByteView {}

extension SecretBytes: Equatable {
    /// Constant-time comparison (for tests and state checks; the length is not secret).
    public static func == (lhs: SecretBytes, rhs: SecretBytes) -> Bool {
        ConstantTime.equals(lhs, rhs)
    }
}

extension SecretBytes: CustomStringConvertible {
    /// Never prints the secret.
    public var description: String { "SecretBytes(\(count) bytes, redacted)" }
}
