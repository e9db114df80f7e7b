import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import ParleyWire

/// A device's WebSocket to the relay: frames in as an async sequence, frames out through
/// `send`. The relay delivers the queued backlog first, then `queueEmpty`, then live messages;
/// a message leaves the queue only when acknowledged (`ack`).
public final class RelayConnection: Sendable {
    /// Frames from the relay, in order; finishes when the connection closes.
    public let frames: AsyncStream<ServerFrame>
    private let frameSink: AsyncStream<ServerFrame>.Continuation
    private let outbox: AsyncStream<String>.Continuation
    private let task: Task<Void, any Error>

    private init(
        frames: AsyncStream<ServerFrame>, frameSink: AsyncStream<ServerFrame>.Continuation,
        outbox: AsyncStream<String>.Continuation, task: Task<Void, any Error>
    ) {
        self.frames = frames
        self.frameSink = frameSink
        self.outbox = outbox
        self.task = task
    }

    /// Connects `credentials`' device to `webSocketURL` (`ws://host:port/v1/ws`).
    public static func connect(webSocketURL: String, credentials: DeviceCredentials) -> RelayConnection {
        let (frames, frameSink) = AsyncStream<ServerFrame>.makeStream()
        let (outgoing, outbox) = AsyncStream<String>.makeStream()
        var headers = HTTPFields()
        headers[.authorization] = credentials.authorizationHeader
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 21, additionalHeaders: headers)
        var logger = Logger(label: "parley.client.ws")
        logger.logLevel = .warning
        let task = Task {
            defer { frameSink.finish() }
            try await WebSocketClient.connect(url: webSocketURL, configuration: configuration, logger: logger) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await message in inbound.messages(maxSize: 1 << 22) {
                            guard case .text(let text) = message,
                                  let frame = try? WireCoding.decoder().decode(ServerFrame.self, from: Data(text.utf8))
                            else { continue }  // a frame this client does not understand is skipped
                            frameSink.yield(frame)
                        }
                        outbox.finish()
                    }
                    for await text in outgoing { try await outbound.write(.text(text)) }
                    try? await outbound.close(.normalClosure, reason: nil)
                    try await group.waitForAll()
                }
            }
        }
        return RelayConnection(frames: frames, frameSink: frameSink, outbox: outbox, task: task)
    }

    public func send(_ frame: ClientFrame) throws {
        outbox.yield(String(decoding: try WireCoding.encoder().encode(frame), as: UTF8.self))
    }

    /// Acknowledges envelopes: the relay deletes them from this device's queue.
    public func ack(_ ids: [UUID]) throws { try send(.ack(ids)) }

    /// Closes the connection and waits for it to end: for the relay's answer to the close frame
    /// at most `timeout`; then the connection task is cancelled, `frames` finishes, and this returns
    /// without waiting any longer (a relay that does not answer must not hold the device).
    ///
    /// The wait is not a task group: a group waits for all its children, and the WebSocket client
    /// does not react to cancellation while it waits for the relay's answer to the upgrade request
    /// (a relay that accepted the TCP connection and then stalled held `parley sync` forever).
    public func close(timeout: Duration = .seconds(5)) async {
        outbox.finish()
        let task = self.task
        let frameSink = self.frameSink
        let done = ResumeOnce()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            done.set(continuation)
            let deadline = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                task.cancel()
                frameSink.finish()
                done.resume()
            }
            Task {
                _ = await task.result
                deadline.cancel()
                done.resume()
            }
        }
    }
}

/// A continuation resumed by the first of several racing tasks (the others do nothing).
private final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var resumed = false

    func set(_ continuation: CheckedContinuation<Void, Never>) {
        lock.withLock {
            if resumed { continuation.resume() } else { self.continuation = continuation }
        }
    }

    func resume() {
        let pending: CheckedContinuation<Void, Never>? = lock.withLock {
            guard !resumed else { return nil }
            resumed = true
            defer { continuation = nil }
            return continuation
        }
        pending?.resume()
    }
}
