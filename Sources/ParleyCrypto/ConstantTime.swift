import CSodium
import Foundation

/// Comparisons whose running time does not depend on where the inputs differ.
public enum ConstantTime {
    /// True when `a` and `b` have equal length and equal bytes. The length is not secret.
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.count == 0 { return true }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return false }
        return sodium_memcmp(pa, pb, a.count) == 0
    }

    @inlinable
    public static func equals<A: ByteView, B: ByteView>(_ a: A, _ b: B) -> Bool {
        a.withBytes { pa in b.withBytes { pb in equals(pa, pb) } }
    }
}

/// Anything that can lend its bytes contiguously. Arrays, slices and `SecretBytes` conform.
public protocol ByteView {
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R
}

extension Array: ByteView where Element == UInt8 {
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        // Arrays of UInt8 always have contiguous storage.
        try self.withUnsafeBufferPointer { (buffer) throws(E) -> R in try body(UnsafeRawBufferPointer(buffer)) }
    }
}

extension ArraySlice: ByteView where Element == UInt8 {
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try self.withUnsafeBufferPointer { (buffer) throws(E) -> R in try body(UnsafeRawBufferPointer(buffer)) }
    }
}

extension Data: ByteView {
    /// The bytes of a `Data` (contiguous, whatever its storage).
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        var result: Result<R, E>? = nil
        withUnsafeBytes { buffer in
            do throws(E) { result = .success(try body(buffer)) } catch { result = .failure(error) }
        }
        switch result {
        case .success(let value)?: return value
        case .failure(let error)?: throw error
        case nil: preconditionFailure("Data.withUnsafeBytes did not run its closure")
        }
    }
}
