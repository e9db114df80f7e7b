import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Gives freed heap memory back to the operating system periodically. glibc's allocator keeps what was freed in
/// its arenas: after a burst (large request bodies, a flood of connections, a backlog written to many devices)
/// the relay's resident memory would otherwise stay at its peak although the memory is free. `malloc_trim`
/// returns the free pages; it takes milliseconds, every `interval`.
struct MemoryReturnService: Service {
    /// How often free heap memory is returned.
    static let interval: Duration = .seconds(30)

    func run() async throws {
        guard let trim = Self.mallocTrim else { return }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                _ = trim(0)
            }
        }
    }

    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// glibc's `malloc_trim(pad)` (malloc.h is not in Swift's Glibc module); nil on another C library.
    private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
        return nil
        #endif
    }()
}
