import Foundation
import ParleyWire
import Testing

@testable import ParleyRelay

#if canImport(Glibc)
import Glibc
#endif

/// A device that stops reading its socket: the relay stops writing to it (the socket is not writable), keeps
/// no more than `maxOutboxBytesPerConnection` of live envelopes for it in memory (the rest is re-read from the
/// store), and once the device reads again it gets every envelope, in order, once.
@Suite("A device that does not read", .timeLimit(.minutes(3)))
struct StalledReaderTests {
    @Test func everyEnvelopeArrivesInOrderOnceTheDeviceReadsAgain() async throws {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 77))
        let stalled = try RawWebSocket(port: relay.port, authorization: bob.authorizationHeader)
        try await stalled.handshake()
        #expect(try await stalled.nextFrame()?.type == .queueEmpty)

        // Bob reads nothing while alice sends more than the relay keeps in memory for him (and more bytes than
        // the sockets buffer): the outbox blocks, then folds live envelopes into a store read. (Quickly: a device
        // that reads nothing for `unwritableTimeoutSeconds` is let go.)
        let count = 40
        for index in 0..<count {
            // 200 KB each (the relay writes them base64-encoded): ~10.7 MB in all, more than the sockets buffer.
            var content = Data(count: 200_000)
            content.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(index).bigEndian) { Data($0) })
            let reply = try await relay.http.call(
                .PUT, "/v1/messages/\(bob.account)", alice,
                body: SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 77, type: 1, content: content)]))
            #expect(reply.status == 200)
        }
        // The relay did stop holding live envelopes for bob.
        #expect(try await relay.metric("parley_relay_outbox_folds_total") > 0)

        // Now bob reads: every envelope, in sending order, once.
        var received: [UInt64] = []
        var ids = Set<UUID>()
        while received.count < count, let frame = try await stalled.nextFrame(timeout: .seconds(20)) {
            guard let envelope = frame.envelope else { continue }
            #expect(ids.insert(envelope.id).inserted)
            received.append(envelope.content.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
        }
        #expect(received == (0..<UInt64(count)).map { $0 })
        #expect(try await stalled.nextFrame(timeout: .milliseconds(500)) == nil)
        try await relay.stop()
    }

    /// A burst of sends over one WebSocket reaches a reading device in sending order: the group commit answers
    /// and delivers batches in commit order, also when one flush loop ends and the next begins.
    @Test func aBurstOfSendsArrivesInOrder() async throws {
        var limits = RelayLimits()
        limits.clientFramesPerSecond = 100_000
        let relay = try await TestRelay.start(limits: limits)
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        let bob = try await relay.http.register(Fixtures.uniqueName("bob"), keys: Fixtures.keys(registrationId: 78))
        let bobWS = try await relay.connect(bob)
        #expect(try await bobWS.backlog().isEmpty)
        let aliceWS = try await relay.connect(alice)
        #expect(try await aliceWS.backlog().isEmpty)
        let count = 1_000
        for index in 0..<count {
            var content = Data(count: 64)
            content.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(index).bigEndian) { Data($0) })
            try aliceWS.send(
                .send(
                    requestId: Int64(index), to: bob.account,
                    SendMessageRequest(messages: [OutgoingDeviceMessage(deviceId: 1, registrationId: 78, type: 1, content: content)])))
        }
        var received: [UInt64] = []
        while received.count < count, let frame = await bobWS.next(timeout: .seconds(20)) {
            guard let envelope = frame.envelope else { continue }
            received.append(envelope.content.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
        }
        #expect(received == (0..<UInt64(count)).map { $0 })
        await aliceWS.close()
        await bobWS.close()
        try await relay.stop()
    }
}
