import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// How long a connection's socket has been unwritable, counted across the brief writable moments that a peer
/// which does not read still produces: its kernel keeps taking a little more now and then (the relay's send
/// buffer grows, the peer's receive queue is compacted), so the socket turns writable for a few milliseconds,
/// the relay writes more, and it is unwritable again. A timer that restarted at every writable moment never
/// fired for such a peer (seen in `SlowClientTests`: a connection with a 4 KiB receive buffer that never read
/// was still open after 120 s). Here unwritable time adds up, and only a socket that stays writable for
/// `forgiveAfter` (its peer reads, or there is nothing left to send) has it forgiven.
///
/// Confined to the connection's event loop, like the channel handler that owns it.
final class UnwritableWatch {
    /// Writable this long without interruption: the peer has caught up, what was counted is forgiven.
    static let forgiveAfter: TimeAmount = .seconds(5)

    private let limit: TimeAmount
    /// Unwritable time counted before the current unwritable stretch.
    private var counted: TimeAmount = .zero
    /// Start of the current unwritable stretch; nil while writable.
    private var since: NIODeadline?
    private var expiry: Scheduled<Void>?
    private var forgiveness: Scheduled<Void>?

    init(limit: TimeAmount) {
        self.limit = limit
    }

    /// The socket is not writable: `expired` runs (on `loop`) once the unwritable time adds up to the limit,
    /// unless the socket becomes writable first.
    func unwritable(on loop: any EventLoop, expired: @escaping () -> Void) {
        forgiveness?.cancel()
        forgiveness = nil
        guard since == nil else { return }
        let now = NIODeadline.now()
        since = now
        let loopSelf = NIOLoopBound(self, eventLoop: loop)
        let loopExpired = NIOLoopBound(expired, eventLoop: loop)
        expiry = loop.scheduleTask(deadline: now + (limit - counted)) {
            loopSelf.value.expiry = nil
            loopExpired.value()
        }
    }

    /// The socket is writable again: the stretch is counted, and forgiven if the socket stays writable.
    func writable(on loop: any EventLoop) {
        guard let since else { return }
        counted = counted + (NIODeadline.now() - since)
        self.since = nil
        expiry?.cancel()
        expiry = nil
        let loopSelf = NIOLoopBound(self, eventLoop: loop)
        forgiveness = loop.scheduleTask(in: Self.forgiveAfter) {
            loopSelf.value.counted = .zero
            loopSelf.value.forgiveness = nil
        }
    }

    /// The connection is gone.
    func stop() {
        expiry?.cancel()
        expiry = nil
        forgiveness?.cancel()
        forgiveness = nil
    }
}

extension ChannelHandlerContext {
    /// Closes the connection at once with a TCP reset, dropping what the kernel still holds for it. A plain
    /// close of a connection whose peer does not read leaves the unsent bytes (up to the send buffer, megabytes)
    /// in an orphaned kernel socket that keeps probing the peer's zero window for minutes: the file descriptor
    /// is freed but the memory is not, and the peer never learns that the connection ended.
    func resetConnection() {
        guard let provider = channel as? any SocketOptionProvider else {
            close(promise: nil)
            return
        }
        let loopSelf = NIOLoopBound(self, eventLoop: eventLoop)
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
            loopSelf.value.close(promise: nil)
        }
    }
}
