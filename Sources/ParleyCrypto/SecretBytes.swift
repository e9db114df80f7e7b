import CSodium

/// Fixed-length secret key material on the heap, wiped with `sodium_memzero` when the last
/// reference goes away. Immutable after initialisation, so sharing it between copies of a
/// session state is safe and cheap; a new key is a new `SecretBytes`.
///
/// Swift may still leave copies of secrets in registers or in arrays a caller made with
/// `copyBytes()`; this type makes sure the long-lived copies are wiped.
public final class SecretBytes: @unchecked Sendable {
    @usableFromInline let storage: UnsafeMutableRawBufferPointer
    public let count: Int

    /// Allocates `count` bytes and lets `initializer` fill them.
    @inlinable
    public init<E: Error>(count: Int, _ initializer: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        self.count = count
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        let view = UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])
        do {
            try initializer(view)
        } catch {
            Self.wipe(storage)
            storage.deallocate()
            throw error
        }
    }

    /// Copies `bytes` into a new secret buffer.
    public convenience init<C: ByteView>(copying bytes: C) {
        let n = bytes.withBytes { $0.count }
        self.init(count: n) { (dst: UnsafeMutableRawBufferPointer) in
            bytes.withBytes { src in
                if let s = src.baseAddress, let d = dst.baseAddress, n > 0 { d.copyMemory(from: s, byteCount: n) }
            }
        }
    }

    deinit {
        Self.wipe(storage)
        storage.deallocate()
    }

    @usableFromInline
    static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        if let base = buffer.baseAddress, buffer.count > 0 { sodium_memzero(base, buffer.count) }
    }

    /// The secret's bytes, for the duration of `body` only.
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A plain copy of the bytes, for serialization. The caller owns (and should wipe) it.
    public func copyBytes() -> [UInt8] {
        withBytes { Array($0) }
    }

    /// A sub-range of the secret as a new secret.
    public func slice(_ range: Range<Int>) -> SecretBytes {
        SecretBytes(count: range.count) { (dst: UnsafeMutableRawBufferPointer) in
            if let d = dst.baseAddress, let s = storage.baseAddress, range.count > 0 {
                d.copyMemory(from: s + range.lowerBound, byteCount: range.count)
            }
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
