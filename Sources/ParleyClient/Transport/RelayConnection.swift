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
    private let outbox: AsyncStream<String>.Continuation
    private let task: Task<Void, any Error>

    private init(frames: AsyncStream<ServerFrame>, outbox: AsyncStream<String>.Continuation, task: Task<Void, any Error>) {
        self.frames = frames
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
        return RelayConnection(frames: frames, outbox: outbox, task: task)
    }

    public func send(_ frame: ClientFrame) throws {
        outbox.yield(String(decoding: try WireCoding.encoder().encode(frame), as: UTF8.self))
    }

    /// Acknowledges envelopes: the relay deletes them from this device's queue.
    public func ack(_ ids: [UUID]) throws { try send(.ack(ids)) }

    /// Closes the connection and waits for it to end: for the relay's answer to the close frame
    /// at most `timeout`, then the connection is torn down (a relay that does not answer must not
    /// hold the device).
    public func close(timeout: Duration = .seconds(5)) async {
        outbox.finish()
        let task = self.task
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await task.result }
            group.addTask {
                if (try? await Task.sleep(for: timeout)) != nil { task.cancel() }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
