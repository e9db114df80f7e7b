import CSodium

/// Comparisons whose running time does not depend on where the inputs differ.
public enum ConstantTime {
    /// True when `a` and `b` have equal length and equal bytes. The length is not secret.
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.count == 0 { return true }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return false }
        return sodium_memcmp(pa, pb, a.count) == 0
    }

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
        let result: Result<R, E> = self.withUnsafeBufferPointer { buffer in
            do throws(E) { return .success(try body(UnsafeRawBufferPointer(buffer))) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension ArraySlice: ByteView where Element == UInt8 {
    @inlinable
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = self.withUnsafeBufferPointer { buffer in
            do throws(E) { return .success(try body(UnsafeRawBufferPointer(buffer))) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
