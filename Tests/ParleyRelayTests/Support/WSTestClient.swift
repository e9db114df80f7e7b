import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import ParleyWire

/// A real WebSocket connection of one device to the relay.
final class WSTestClient: Sendable {
    private let frames: FrameInbox
    private let outbox: AsyncStream<String>.Continuation
    private let task: Task<Void, any Error>

    private init(frames: FrameInbox, outbox: AsyncStream<String>.Continuation, task: Task<Void, any Error>) {
        self.frames = frames
        self.outbox = outbox
        self.task = task
    }

    static func connect(port: Int, credentials: DeviceCredentials) async throws -> WSTestClient {
        try await connect(port: port, authorization: credentials.authorizationHeader)
    }

    static func connect(port: Int, authorization: String?, query: String = "") async throws -> WSTestClient {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        let inbox = FrameInbox()
        var headers = HTTPFields()
        if let authorization { headers[.authorization] = authorization }
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 21, additionalHeaders: headers)
        var logger = Logger(label: "ws-test-client")
        logger.logLevel = .warning
        let task = Task {
            defer { Task { await inbox.close() } }
            try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(port)/v1/ws\(query)", configuration: configuration, logger: logger
            ) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await message in inbound.messages(maxSize: 1 << 22) {
                            if case .text(let text) = message,
                                let frame = try? WireCoding.decoder().decode(ServerFrame.self, from: Data(text.utf8))
                            {
                                await inbox.push(frame)
                            } else {
                                await inbox.push(ServerFrame(type: .error, error: ErrorResponse(code: .malformedRequest, message: "unparsable")))
                            }
                        }
                        // The relay closed the connection: stop the writer too.
                        await inbox.close()
                        continuation.finish()
                    }
                    for await text in stream {
                        try await outbound.write(.text(text))
                    }
                    try? await outbound.close(.normalClosure, reason: nil)
                    try await group.waitForAll()
                }
            }
        }
        return WSTestClient(frames: inbox, outbox: continuation, task: task)
    }

    func send(_ frame: ClientFrame) throws {
        let data = try WireCoding.encoder().encode(frame)
        outbox.yield(String(decoding: data, as: UTF8.self))
    }

    func sendRaw(_ text: String) {
        outbox.yield(text)
    }

    /// Next frame, or nil on timeout / closed connection. The default timeouts are generous: on a loaded machine
    /// (CI, parallel test runs) a frame can take seconds; checks that nothing arrives pass their own timeout.
    func next(timeout: Duration = .seconds(20)) async -> ServerFrame? {
        await frames.next(timeout: timeout)
    }

    /// Next frame that is not a presence/typing/pong frame... of the given type.
    func next(_ type: FrameType, timeout: Duration = .seconds(20)) async -> ServerFrame? {
        while let frame = await next(timeout: timeout) {
            if frame.type == type { return frame }
        }
        return nil
    }

    /// Reads envelopes until `queueEmpty`.
    func backlog(timeout: Duration = .seconds(30)) async throws -> [Envelope] {
        var envelopes: [Envelope] = []
        while let frame = await next(timeout: timeout) {
            switch frame.type {
            case .message:
                if let envelope = frame.envelope { envelopes.append(envelope) }
            case .queueEmpty:
                return envelopes
            default:
                continue
            }
        }
        throw TestFailure("no queueEmpty (got \(envelopes.count) envelopes)")
    }

    func ack(_ ids: [UUID]) throws {
        try send(.ack(ids))
    }

    /// True once the connection has ended (the relay closed it or it failed) and every frame it brought was read.
    var isClosed: Bool {
        get async { await frames.isDrained }
    }

    /// Closes the connection and waits (bounded) until it is down.
    func close() async {
        outbox.finish()
        _ = await finish(timeout: .seconds(5))
    }

    /// Waits (bounded) for the connection to end; true if it failed (e.g. the upgrade was refused).
    func failed() async -> Bool {
        switch await finish(timeout: .seconds(5)) {
        case .some(.failure): true
        case .some(.success), .none: false
        }
    }

    /// Waits up to `timeout` for the connection task; cancels it if it is still running then.
    private func finish(timeout: Duration) async -> Result<Void, any Error>? {
        let task = self.task
        let box = ResultBox()
        let watcher = Task {
            do {
                try await task.value
                await box.set(.success(()))
            } catch {
                await box.set(.failure(error))
            }
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let result = await box.result { return result }
            try? await Task.sleep(for: .milliseconds(20))
        }
        task.cancel()
        watcher.cancel()
        return nil
    }

    /// Whether the relay closed the connection (inbox closed) within the timeout.
    func waitClosed(timeout: Duration = .seconds(20)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await frames.isClosed { return true }
            _ = await frames.next(timeout: .milliseconds(100))
        }
        return await frames.isClosed
    }
}

/// Frames received by a test client, readable with a timeout.
actor FrameInbox {
    private var buffer: [ServerFrame] = []
    private var waiter: (id: Int, continuation: CheckedContinuation<ServerFrame?, Never>)?
    private var nextId = 0
    private(set) var isClosed = false

    var isDrained: Bool { isClosed && buffer.isEmpty }

    func push(_ frame: ServerFrame) {
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(returning: frame)
        } else {
            buffer.append(frame)
        }
    }

    func close() {
        isClosed = true
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(returning: nil)
        }
    }

    func next(timeout: Duration) async -> ServerFrame? {
        if !buffer.isEmpty { return buffer.removeFirst() }
        if isClosed { return nil }
        nextId += 1
        let id = nextId
        return await withCheckedContinuation { continuation in
            waiter = (id, continuation)
            Task {
                try? await Task.sleep(for: timeout)
                self.expire(id)
            }
        }
    }

    private func expire(_ id: Int) {
        guard let waiter, waiter.id == id else { return }
        self.waiter = nil
        waiter.continuation.resume(returning: nil)
    }
}

actor ResultBox {
    private(set) var result: Result<Void, any Error>?
    func set(_ result: Result<Void, any Error>) { self.result = result }
}
