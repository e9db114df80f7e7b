import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process for tests, started with `posix_spawn` and reaped by a thread of its own.
///
/// Waiting for it never blocks a Swift concurrency thread. That matters here: the tests run a relay in
/// their own process, on the same small cooperative pool (one thread per core). `Process.waitUntilExit()`
/// or a blocking pipe read on that pool, while the child talks to the in-process relay, starves the relay;
/// with two of them the whole test process deadlocks (seen in CI on a 2-core machine).
public final class ChildProcess: Sendable {
    /// How a child ended.
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    public let pid: pid_t
    /// Where stdout and stderr went (nil: /dev/null).
    public let outputPath: String?
    private let state = Mutex<State>(State())

    private struct State {
        var termination: Termination?
        var waiters: [CheckedContinuation<Termination, Never>] = []
    }

    private init(pid: pid_t, outputPath: String?) {
        self.pid = pid
        self.outputPath = outputPath
    }

    /// Starts `executable` with `arguments`. Output (stdout and stderr together) goes to a fresh temporary
    /// file when `captureOutput`, else to /dev/null; stdin is /dev/null.
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, captureOutput: Bool = false
    ) throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ChildProcessError("\(executable) is missing or not executable")
        }
        let outputPath = captureOutput
            ? FileManager.default.temporaryDirectory.appendingPathComponent("parley-child-\(UUID().uuidString).out").path
            : nil

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Sockets and files of the test process (an in-process relay's listener) stay out of the child.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }

        let environment = environment ?? ProcessInfo.processInfo.environment
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var spawned: pid_t = 0
        let result = posix_spawn(&spawned, executable, &actions, nil, argv, envp)
        guard result == 0 else { throw ChildProcessError("posix_spawn \(executable): errno \(result)") }
        let pid = spawned

        let child = ChildProcess(pid: pid, outputPath: outputPath)
        let reaper = Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 {
                if errno != EINTR {
                    child.finish(.exited(-1))
                    return
                }
            }
            // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (the C macros are not imported).
            let signal = status & 0x7f
            child.finish(signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal))
        }
        reaper.start()
        return child
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// glibc ≥ 2.34 has `posix_spawn_file_actions_addclosefrom_np`; Swift's Glibc module does not import it.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    private func finish(_ termination: Termination) {
        let waiters = state.withLock { state -> [CheckedContinuation<Termination, Never>] in
            state.termination = termination
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    /// Whether the child has ended.
    public var termination: Termination? { state.withLock { $0.termination } }

    /// Waits (without blocking a thread) until the child has ended.
    public func wait() async -> Termination {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Termination? in
                if let termination = state.termination { return termination }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Waits at most `timeout`; nil if the child is still running.
    public func wait(timeout: Duration) async -> Termination? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let termination { return termination }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return termination
    }

    public func signal(_ signal: Int32) {
        if termination == nil { kill(pid, signal) }
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`; returns how it ended.
    @discardableResult
    public func stop(grace: Duration = .seconds(15)) async -> Termination {
        signal(SIGTERM)
        if let termination = await wait(timeout: grace) { return termination }
        signal(SIGKILL)
        return await wait()
    }

    /// The captured output so far ("" when not captured).
    public func output() -> String {
        guard let outputPath, let data = FileManager.default.contents(atPath: outputPath) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs to completion (bounded: SIGKILL after `timeout`); returns the exit status (-signal when killed)
    /// and the output. The output file is removed afterwards.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        timeout: Duration = .seconds(120)
    ) async throws -> (status: Int32, output: String) {
        let child = try spawn(executable, arguments, environment: environment, captureOutput: true)
        defer { if let path = child.outputPath { try? FileManager.default.removeItem(atPath: path) } }
        guard let termination = await child.wait(timeout: timeout) else {
            child.signal(SIGKILL)
            _ = await child.wait()
            throw ChildProcessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        switch termination {
        case .exited(let status): return (status, child.output())
        case .signaled(let signal): return (-signal, child.output())
        }
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
