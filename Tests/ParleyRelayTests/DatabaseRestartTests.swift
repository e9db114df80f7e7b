import Foundation
import ParleyTestSupport
import ParleyWire
import Testing

/// PostgreSQL goes away under load and comes back, under two relay nodes: the nodes answer 503 (never 500, never a
/// hang) while it is down and say so on `/healthz`, reconnect by themselves within a bounded time once it is back
/// (pool, LISTEN connection, subscriptions), and lose nothing they acknowledged. Each test runs a PostgreSQL server
/// of its own (scripts/pg-throwaway.sh), since it stops it; the other PostgreSQL tests keep theirs.
///
/// Traffic crosses nodes both ways: alice (a device connected to node 0) and bob (connected to node 1) send to each
/// other over HTTP through their own node all along, and stay connected by WebSocket as a client does (reconnecting
/// when the relay closes the session), acknowledging what they receive.
@Suite(
    "PostgreSQL restarting under load", .serialized, .timeLimit(.minutes(5)),
    .enabled(if: TestBackend.available.contains(.postgres), "needs PostgreSQL (scripts/test.sh)"))
struct DatabaseRestartTests {
    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/pg-throwaway.sh").path

    /// After PostgreSQL is back, the nodes serve again within this time (they reconnect within a few seconds: the
    /// listener retries at most 2 s apart and then renews the pool; the rest is room for a loaded machine).
    static let recoveryBound: Duration = .seconds(60)

    static func server(_ command: String, _ directory: String) async throws -> String {
        let (status, output) = try await ChildProcess.run("/bin/bash", [script, command, directory], timeout: .seconds(120))
        guard status == 0 else { throw TestFailure("pg-throwaway.sh \(command): \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Statuses of one sender's requests, in order, and the contents of those acknowledged (200).
    actor Outcomes {
        var statuses: [Int] = []
        var acknowledged: [Data] = []
        /// Why requests got no HTTP answer at all (status -1).
        var failures: [String] = []
        /// Set when the test has seen enough: the sender finishes its request in flight and stops (cancelling it
        /// would fail that request on the client's side).
        var stopped = false
        func stop() { stopped = true }
        func record(_ status: Int, _ content: Data) {
            statuses.append(status)
            if status == 200 { acknowledged.append(content) }
        }
        func failed(_ error: any Error, _ content: Data) {
            failures.append("\(error)")
            record(-1, content)
        }
        func count(_ status: Int) -> Int { statuses.filter { $0 == status }.count }
    }

    /// Sends 64 random bytes from `sender` to `recipient`'s device 1 through one node, every 10 ms, until stopped.
    static func sending(
        _ http: HTTPTestClient, from sender: DeviceCredentials, to recipient: DeviceCredentials, registrationId: UInt32,
        into outcomes: Outcomes
    ) -> Task<Void, Never> {
        Task {
            // Bounded however the test goes (about 100 s of sending on an idle machine).
            for _ in 0..<10_000 {
                if await outcomes.stopped { return }
                let content = Fixtures.bytes(64)
                let request = SendMessageRequest(messages: [
                    OutgoingDeviceMessage(deviceId: 1, registrationId: registrationId, type: 1, content: content)
                ])
                do {
                    let status = try await http.call(.PUT, "/v1/messages/\(recipient.account)", sender, body: request).status
                    await outcomes.record(status, content)
                } catch {
                    await outcomes.failed(error, content)
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// What one device received over its WebSocket sessions, in order (a redelivered envelope appears again).
    actor Inbox {
        var contents: [Data] = []
        var sessions = 0
        func add(_ content: Data) { contents.append(content) }
        func connected() { sessions += 1 }
        func has(_ content: Data) -> Bool { contents.contains(content) }
    }

    /// Keeps the device connected to its node, as a client does: reads and acknowledges every envelope, and connects
    /// again (after 300 ms) whenever the session ends or cannot be opened (503 while the database is down).
    static func receiving(port: Int, credentials: DeviceCredentials, into inbox: Inbox) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                if let ws = try? await WSTestClient.connect(port: port, credentials: credentials) {
                    await inbox.connected()
                    while !Task.isCancelled {
                        if let frame = await ws.next(timeout: .seconds(1)) {
                            if frame.type == .message, let envelope = frame.envelope {
                                await inbox.add(envelope.content)
                                try? ws.ack([envelope.id])
                            }
                        } else if await ws.isClosed {
                            break
                        }
                    }
                    await ws.close()
                }
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
    }

    /// `GET /healthz` of a node: its status and the `status` field (nil when it gave no answer).
    static func health(_ http: HTTPTestClient) async -> (Int, String?)? {
        guard let reply = try? await http.raw(.GET, "/healthz") else { return nil }
        return (reply.status, (try? reply.decode(HealthResponse.self))?.status)
    }

    /// Whether every element of `sent` is in `received`, in the order sent (duplicates in `received` allowed).
    static func inOrder(_ sent: [Data], in received: [Data]) -> Bool {
        var position = received.startIndex
        for content in sent {
            guard let found = received[position...].firstIndex(of: content) else { return false }
            position = received.index(after: found)
        }
        return true
    }

    enum Outage {
        /// Stopped until both nodes have refused sends with 503 (a few seconds), then started again.
        case brief
        /// Stopped for 30 s: longer than every pool timeout (5 s lease, 5 s connect) and than a node lease (10 s).
        case long
        /// Stopped until refused, started, and at once stopped and started again.
        case twice
    }

    @Test func briefOutage() async throws { try await Self.run(.brief) }
    @Test func outageLongerThanEveryTimeout() async throws { try await Self.run(.long) }
    @Test func twoRestartsInARow() async throws { try await Self.run(.twice) }

    static func run(_ outage: Outage) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("parley-pg-restart-\(UUID().uuidString)").path
        let url = try await server("start", directory)
        var nodes: [ChildProcess] = []
        var tasks: [Task<Void, Never>] = []
        func output() -> String { nodes.enumerated().map { "node \($0): \($1.output().suffix(4_000))" }.joined(separator: "\n") }
        do {
            let database = url + "?schema=restart"
            var ports: [Int] = []
            for _ in 0..<2 {
                let port = try KillRestartTests.freePort()
                nodes.append(try await MultiNodeTests.Cluster.launch(port: port, database: database, arguments: []))
                ports.append(port)
            }
            let http = ports.map { HTTPTestClient(port: $0) }
            let alice = try await http[0].register(Fixtures.uniqueName("alice"))
            let bob = try await http[1].register(Fixtures.uniqueName("bob"))
            let bobRegistration = try #require(try await http[0].devices(of: bob.account, alice).first).registrationId
            let aliceRegistration = try #require(try await http[1].devices(of: alice.account, bob).first).registrationId

            // alice is connected to node 0, bob to node 1; each sends to the other through their own node.
            let aliceInbox = Inbox()
            let bobInbox = Inbox()
            tasks.append(receiving(port: ports[0], credentials: alice, into: aliceInbox))
            tasks.append(receiving(port: ports[1], credentials: bob, into: bobInbox))
            let toBob = Outcomes()
            let toAlice = Outcomes()
            let senders = [
                sending(http[0], from: alice, to: bob, registrationId: bobRegistration, into: toBob),
                sending(http[1], from: bob, to: alice, registrationId: aliceRegistration, into: toAlice),
            ]
            let started = await eventually(timeout: .seconds(30)) {
                let (a, b) = (await toBob.count(200), await toAlice.count(200))
                return a >= 20 && b >= 20
            }
            try #require(started, "traffic through both nodes: \(output())")

            /// Stops PostgreSQL and waits until both nodes refuse sends with 503 and report themselves degraded.
            func halt(for duration: Duration? = nil) async throws {
                let refusedBefore = (await toBob.count(503), await toAlice.count(503))
                _ = try await server("halt", directory)
                let refused = await eventually(timeout: .seconds(30)) {
                    let (a, b) = (await toBob.count(503), await toAlice.count(503))
                    return a >= refusedBefore.0 + 3 && b >= refusedBefore.1 + 3
                }
                #expect(refused, "sends through both nodes are answered 503 while PostgreSQL is down")
                let degraded = await eventually(timeout: .seconds(30)) {
                    for node in http { guard let answer = await health(node), answer == (503, "degraded") else { return false } }
                    return true
                }
                #expect(degraded, "/healthz of both nodes answers 503 degraded while PostgreSQL is down")
                if let duration { try await Task.sleep(for: duration) }
            }

            switch outage {
            case .brief:
                try await halt()
                _ = try await server("resume", directory)
            case .long:
                try await halt(for: .seconds(30))
                _ = try await server("resume", directory)
            case .twice:
                try await halt()
                _ = try await server("resume", directory)
                try await halt()
                _ = try await server("resume", directory)
            }

            // Within the bound: both nodes healthy, and both senders acknowledged again (their node's pool works).
            let acknowledgedBefore = (await toBob.count(200), await toAlice.count(200))
            let recovered = await eventually(timeout: recoveryBound) {
                for node in http { guard let answer = await health(node), answer == (200, "ok") else { return false } }
                let (a, b) = (await toBob.count(200), await toAlice.count(200))
                return a >= acknowledgedBefore.0 + 20 && b >= acknowledgedBefore.1 + 20
            }
            #expect(recovered, "both nodes serve again within \(recoveryBound) after PostgreSQL is back:\n\(output())")
            await toBob.stop()
            await toAlice.stop()
            for sender in senders { await sender.value }

            // A message sent now through each node reaches the device connected to the other node (LISTEN is back).
            let markers = (Fixtures.bytes(64), Fixtures.bytes(64))
            let markerStatuses = [
                try await http[0].call(
                    .PUT, "/v1/messages/\(bob.account)", alice,
                    body: SendMessageRequest(messages: [
                        OutgoingDeviceMessage(deviceId: 1, registrationId: bobRegistration, type: 1, content: markers.0)
                    ])
                ).status,
                try await http[1].call(
                    .PUT, "/v1/messages/\(alice.account)", bob,
                    body: SendMessageRequest(messages: [
                        OutgoingDeviceMessage(deviceId: 1, registrationId: aliceRegistration, type: 1, content: markers.1)
                    ])
                ).status,
            ]
            #expect(markerStatuses == [200, 200])
            let crossed = await eventually(timeout: .seconds(30)) {
                let (a, b) = (await bobInbox.has(markers.0), await aliceInbox.has(markers.1))
                return a && b
            }
            #expect(crossed, "a message through each node reaches the device on the other node:\n\(output())")

            // Nothing acknowledged is lost: each device gets every message acknowledged to its sender, in order.
            let sentToBob = await toBob.acknowledged
            let sentToAlice = await toAlice.acknowledged
            let complete = await eventually(timeout: .seconds(30)) {
                let (toBob, toAlice) = (await bobInbox.contents, await aliceInbox.contents)
                return inOrder(sentToBob, in: toBob) && inOrder(sentToAlice, in: toAlice)
            }
            let receivedCounts = (await bobInbox.contents.count, await aliceInbox.contents.count)
            #expect(
                complete,
                "every acknowledged message arrives, in order (to bob: \(sentToBob.count) acknowledged, \(receivedCounts.0) received; to alice: \(sentToAlice.count), \(receivedCounts.1))"
            )
            for outcomes in [toBob, toAlice] {
                let statuses = await outcomes.statuses
                let failures = await outcomes.failures
                #expect(
                    statuses.allSatisfy { $0 == 200 || $0 == 503 }, "only 200 and 503: \(Set(statuses)), \(failures.prefix(5))\n\(output())")
            }
        } catch {
            for task in tasks { task.cancel() }
            for node in nodes { await node.stop() }
            _ = try? await server("stop", directory)
            throw error
        }
        for task in tasks {
            task.cancel()
            await task.value
        }
        for node in nodes {
            let termination = await node.stop()
            #expect(termination == .exited(0), "a node stops cleanly after the outage: \(termination)")
        }
        _ = try await server("stop", directory)
    }
}
