import Foundation
import ParleyTestSupport
import ParleyWire
import Testing

/// Two real `parley-relay` processes on different loopback ports sharing one PostgreSQL database (a schema of
/// their own on the test server), with clients on each: what one node commits reaches devices connected to the
/// other, as on one node.
@Suite(
    "Several relay nodes on one PostgreSQL", .timeLimit(.minutes(5)),
    .enabled(if: TestBackend.available.contains(.postgres), "needs PARLEY_TEST_POSTGRES (scripts/test.sh starts a server)"))
struct MultiNodeTests {
    /// Two relay nodes on one fresh database.
    struct Cluster {
        let database: String
        var ports: [Int]
        var processes: [ChildProcess]

        /// `arguments`: extra `parley-relay` flags (limits a test raises to set itself up, never what it tests).
        static func start(nodes: Int = 2, arguments: [String] = []) async throws -> Cluster {
            let database = try TestBackend.freshPostgresDatabase(prefix: "mn")
            var cluster = Cluster(database: database, ports: [], processes: [])
            for _ in 0..<nodes {
                let port = try KillRestartTests.freePort()
                do {
                    cluster.processes.append(try await launch(port: port, database: database, arguments: arguments))
                } catch {
                    await cluster.stop()
                    throw error
                }
                cluster.ports.append(port)
            }
            return cluster
        }

        static func launch(port: Int, database: String, arguments: [String]) async throws -> ChildProcess {
            let binary = KillRestartTests.binary
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw TestFailure("\(binary) is missing: build every product first (swift build --build-tests)")
            }
            let process = try ChildProcess.spawn(
                binary, ["--port", "\(port)", "--database", database, "--log-level", "warning"] + arguments, captureOutput: true)
            let http = HTTPTestClient(port: port)
            let ready = await eventually(timeout: .seconds(30)) { (try? await http.raw(.GET, "/healthz").status) == 200 }
            guard ready else {
                await process.stop()
                throw TestFailure("parley-relay did not become ready on port \(port): \(process.output())")
            }
            return process
        }

        func http(_ node: Int) -> HTTPTestClient { HTTPTestClient(port: ports[node]) }

        func connect(_ node: Int, _ credentials: DeviceCredentials) async throws -> WSTestClient {
            try await WSTestClient.connect(port: ports[node], credentials: credentials)
        }

        func stop() async {
            for process in processes { await process.stop() }
        }

        /// Makes two accounts contacts (a 1:1 message each way, through node 0: presence and typing go between
        /// contacts only), then empties both queues again (each device reads and acks its backlog).
        func makeContacts(_ a: DeviceCredentials, _ b: DeviceCredentials) async throws {
            for (from, to) in [(a, b), (b, a)] {
                let reply = try await http(0).sendToAll(from: from, to: to.account)
                guard reply.status == 200 else { throw TestFailure("contact message \(from.account) -> \(to.account): \(reply.status)") }
            }
            for device in [a, b] {
                let emptied = await eventually(timeout: .seconds(15)) {
                    guard let ws = try? await connect(0, device), let backlog = try? await ws.backlog() else { return false }
                    if !backlog.isEmpty { try? ws.ack(backlog.map(\.id)) }
                    await ws.close()
                    return backlog.isEmpty
                }
                guard emptied else { throw TestFailure("queue of \(device.account) not emptied") }
            }
        }
    }

    /// Reads `count` message envelopes (skipping other frames), acking each.
    static func receive(_ ws: WSTestClient, count: Int, timeout: Duration = .seconds(15)) async throws -> [Envelope] {
        var envelopes: [Envelope] = []
        while envelopes.count < count {
            guard let frame = await ws.next(.message, timeout: timeout), let envelope = frame.envelope else {
                throw TestFailure("received \(envelopes.count) of \(count) envelopes")
            }
            envelopes.append(envelope)
            try ws.ack([envelope.id])
        }
        return envelopes
    }

    @Test func directMessagesCrossNodesInOrder() async throws {
        let cluster = try await Cluster.start()
        do {
            let alice = try await cluster.http(0).register(Fixtures.uniqueName("alice"))
            let bob = try await cluster.http(1).register(Fixtures.uniqueName("bob"))
            let aliceWS = try await cluster.connect(0, alice)
            let bobWS = try await cluster.connect(1, bob)
            #expect(try await aliceWS.backlog().isEmpty)
            #expect(try await bobWS.backlog().isEmpty)
            let bobDevice = try #require(try await cluster.http(0).devices(of: bob.account, alice).first)

            // alice (node 0) sends over her WebSocket, each after the previous answer; bob (node 1) gets them live.
            var sent: [Data] = []
            for index in 0..<30 {
                let content = Fixtures.bytes(80)
                sent.append(content)
                try aliceWS.send(
                    .send(
                        requestId: Int64(index), to: bob.account,
                        SendMessageRequest(messages: [
                            OutgoingDeviceMessage(deviceId: 1, registrationId: bobDevice.registrationId, type: 1, content: content)
                        ])))
                let answer = try #require(await aliceWS.next(.sendResult, timeout: .seconds(15)))
                #expect(answer.requestId == Int64(index))
            }
            let received = try await Self.receive(bobWS, count: sent.count)
            #expect(received.map(\.content) == sent)
            #expect(received.allSatisfy { $0.senderAccount == alice.account })

            // And back, over HTTP to the other node, received on node 0.
            let reply = Fixtures.bytes(50)
            #expect(try await cluster.http(1).sendToAll(from: bob, to: alice.account, content: reply).status == 200)
            #expect(try await Self.receive(aliceWS, count: 1).map(\.content) == [reply])

            // Nothing left queued: every envelope was delivered once and acked.
            await bobWS.close()
            let again = try await cluster.connect(0, bob)
            #expect(try await again.backlog().isEmpty)
            await again.close()
            await aliceWS.close()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func groupOfFiftyAcrossNodes() async throws {
        // Fifty registrations from one address (loopback) exceed the default of 20 per address at once.
        let cluster = try await Cluster.start(arguments: ["--creations-per-minute-per-address", "6000"])
        do {
            var members: [DeviceCredentials] = []
            for index in 0..<50 {
                members.append(try await cluster.http(index % 2).register(Fixtures.uniqueName("m\(index)")))
            }
            var sockets: [WSTestClient] = []
            for (index, member) in members.enumerated() {
                let ws = try await cluster.connect(index % 2, member)
                _ = try await ws.backlog()
                sockets.append(ws)
            }
            let created = try await cluster.http(0).call(
                .POST, "/v1/groups", members[0], body: CreateGroupRequest(members: members.dropFirst().map(\.account)))
            #expect(created.status == 201)
            let group = try created.decode(GroupInfo.self)
            #expect(group.members.count == 50)
            // Every member gets the creation event, on whichever node it is.
            for ws in sockets {
                let event = try #require(try await Self.receive(ws, count: 1).first)
                #expect(event.kind == .groupEvent)
            }
            // A member on node 1 sends; the 49 others get it, on both nodes.
            let content = Fixtures.bytes(120)
            let sent = try await cluster.http(1).call(
                .PUT, "/v1/groups/\(group.groupId.uuidString)/messages", members[1],
                body: SendGroupMessageRequest(type: 1, content: content, clientTimestamp: nil))
            #expect(sent.status == 200)
            #expect(try sent.decode(SendMessageResponse.self).queued == 49)
            for (index, ws) in sockets.enumerated() where index != 1 {
                let envelope = try #require(try await Self.receive(ws, count: 1).first)
                #expect(envelope.content == content)
                #expect(envelope.groupId == group.groupId)
            }
            for ws in sockets { await ws.close() }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// A 1:1 send from alice's first device (node 0) reaches her second device (node 1) as its sync copy, and
    /// bob (node 1); a group typing indicator from node 0 reaches the other members' devices on both nodes,
    /// alice's own second device included, and not the device that sent it.
    @Test func ownDeviceSyncAndGroupTypingAcrossNodes() async throws {
        let cluster = try await Cluster.start()
        do {
            let alice = try await cluster.http(0).register(Fixtures.uniqueName("alice"))
            let aliceSecond = try await cluster.http(0).link(from: alice)
            let bob = try await cluster.http(1).register(Fixtures.uniqueName("bob"))
            let carol = try await cluster.http(0).register(Fixtures.uniqueName("carol"))
            let aliceWS = try await cluster.connect(0, alice)
            let secondWS = try await cluster.connect(1, aliceSecond)
            let bobWS = try await cluster.connect(1, bob)
            let carolWS = try await cluster.connect(0, carol)
            for ws in [aliceWS, secondWS, bobWS, carolWS] { _ = try await ws.backlog() }

            let content = Fixtures.bytes(70)
            #expect(try await cluster.http(0).sendToAll(from: alice, to: bob.account, content: content).status == 200)
            let synced = try await Self.receive(secondWS, count: 1)
            #expect(synced.map(\.content) == [content])
            #expect(synced.first?.senderAccount == alice.account)
            #expect(synced.first?.senderDevice == alice.deviceId)
            #expect(try await Self.receive(bobWS, count: 1).map(\.content) == [content])

            let created = try await cluster.http(1).call(
                .POST, "/v1/groups", bob, body: CreateGroupRequest(members: [alice.account, carol.account]))
            #expect(created.status == 201)
            let group = try created.decode(GroupInfo.self)
            for ws in [aliceWS, secondWS, bobWS, carolWS] {
                #expect(try await Self.receive(ws, count: 1).first?.kind == .groupEvent)
            }
            try aliceWS.send(ClientFrame(type: .typing, groupId: group.groupId, started: true))
            for ws in [secondWS, bobWS, carolWS] {
                let typing = try #require(await ws.next(.typing, timeout: .seconds(15)))
                #expect(typing.account == alice.account)
                #expect(typing.deviceId == alice.deviceId)
                #expect(typing.groupId == group.groupId)
                #expect(typing.started == true)
            }
            #expect(await aliceWS.next(.typing, timeout: .seconds(2)) == nil)
            for ws in [aliceWS, secondWS, bobWS, carolWS] { await ws.close() }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func presenceTypingAndSupersedeAcrossNodes() async throws {
        let cluster = try await Cluster.start()
        do {
            let alice = try await cluster.http(0).register(Fixtures.uniqueName("alice"))
            let bob = try await cluster.http(0).register(Fixtures.uniqueName("bob"))
            try await cluster.makeContacts(alice, bob)
            let bobWS = try await cluster.connect(1, bob)
            _ = try await bobWS.backlog()
            try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
            #expect(try #require(await bobWS.next(.presence)).online == false)

            // alice comes online on the other node.
            let aliceWS = try await cluster.connect(0, alice)
            _ = try await aliceWS.backlog()
            let online = try #require(await bobWS.next(.presence, timeout: .seconds(15)))
            #expect(online.online == true)

            // Typing from node 0 reaches bob on node 1.
            try aliceWS.send(ClientFrame(type: .typing, to: bob.account, started: true))
            let typing = try #require(await bobWS.next(.typing, timeout: .seconds(15)))
            #expect(typing.account == alice.account)

            // alice connects again, to node 1: her session on node 0 is closed (superseded); she stays online.
            let aliceAgain = try await cluster.connect(1, alice)
            _ = try await aliceAgain.backlog()
            #expect(await aliceWS.waitClosed(timeout: .seconds(15)))
            // The newer session is the one that gets her messages.
            let content = Fixtures.bytes(30)
            #expect(try await cluster.http(0).sendToAll(from: bob, to: alice.account, content: content).status == 200)
            #expect(try await Self.receive(aliceAgain, count: 1).map(\.content) == [content])

            // alice leaves: bob sees her offline (no "online" report in between: she never was offline).
            await aliceAgain.close()
            let offline = try #require(await bobWS.next(.presence, timeout: .seconds(15)))
            #expect(offline.online == false)
            await bobWS.close()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Node 0 is killed with SIGKILL while alice sends through it: every send it acknowledged reaches bob, who
    /// was connected to node 0 and reconnects to node 1; and bob's presence goes offline for a subscriber on
    /// node 1 once node 0's lease runs out.
    @Test func aNodeKilledMidTrafficLosesNothingAcknowledged() async throws {
        var cluster = try await Cluster.start()
        do {
            let alice = try await cluster.http(0).register(Fixtures.uniqueName("alice"))
            let bob = try await cluster.http(0).register(Fixtures.uniqueName("bob"))
            let carol = try await cluster.http(1).register(Fixtures.uniqueName("carol"))
            try await cluster.makeContacts(bob, carol)
            let carolWS = try await cluster.connect(1, carol)
            _ = try await carolWS.backlog()
            try carolWS.send(ClientFrame(type: .subscribePresence, accounts: [bob.account]))
            #expect(try #require(await carolWS.next(.presence)).online == false)

            let bobWS = try await cluster.connect(0, bob)  // never acks
            _ = try await bobWS.backlog()
            #expect(try #require(await carolWS.next(.presence, timeout: .seconds(15))).online == true)

            let registrationId = try #require(try await cluster.http(0).devices(of: bob.account, alice).first).registrationId
            let acknowledged = AcknowledgedSends()
            let http = cluster.http(0)
            let sender = Task {
                for _ in 0..<400 {
                    let content = Fixtures.bytes(64)
                    let request = SendMessageRequest(messages: [
                        OutgoingDeviceMessage(deviceId: 1, registrationId: registrationId, type: 1, content: content)
                    ])
                    guard let reply = try? await http.call(.PUT, "/v1/messages/\(bob.account)", alice, body: request) else { return }
                    if reply.status == 200 { await acknowledged.add(content) }
                }
            }
            // Mid-traffic (a loaded machine may take long for the first sends).
            _ = await eventually(timeout: .seconds(90)) { await acknowledged.count >= 20 }
            cluster.processes[0].signal(SIGKILL)
            #expect(await cluster.processes[0].wait() == .signaled(SIGKILL))
            await sender.value
            let sent = await acknowledged.contents
            #expect(!sent.isEmpty)

            // bob was online on the dead node only: carol (node 1) sees him offline once its lease ran out (10 s,
            // then up to a heartbeat, 2 s, until node 1 removes the dead node's rows, then the coalescing window).
            let offline = try #require(await carolWS.next(.presence, timeout: .seconds(40)))
            #expect(offline.online == false)

            // bob reconnects to the surviving node and gets every acknowledged message, in order (and perhaps the
            // one the node committed but could not answer any more).
            let bobAgain = try await cluster.connect(1, bob)
            let backlog = try await bobAgain.backlog(timeout: .seconds(20)).map(\.content)
            #expect(Array(backlog.prefix(sent.count)) == sent)
            #expect(backlog.count <= sent.count + 1)
            await bobAgain.close()
            await bobWS.close()
            await carolWS.close()
            cluster.processes.removeFirst()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Bundle fetches through both nodes at the same instant: each one-time prekey is handed out once.
    @Test func concurrentBundleFetchesThroughBothNodes() async throws {
        let cluster = try await Cluster.start()
        do {
            let keys = Fixtures.keys(oneTimeCount: 10)
            let bob = try await cluster.http(0).register(Fixtures.uniqueName("bob"), keys: keys)
            var fetchers: [DeviceCredentials] = []
            for index in 0..<4 { fetchers.append(try await cluster.http(index % 2).register(Fixtures.uniqueName("f\(index)"))) }
            let fetched = try await withThrowingTaskGroup(of: UInt32?.self) { group in
                for index in 0..<24 {
                    let http = cluster.http(index % 2)
                    let fetcher = fetchers[index % fetchers.count]
                    group.addTask {
                        let reply = try await http.call(.GET, "/v1/keys/\(bob.account)/1", fetcher)
                        guard reply.status == 200 else { throw TestFailure("bundle fetch: \(reply.status)") }
                        return try reply.decode(PreKeyBundleResponse.self).devices.first?.oneTimePreKey?.keyId
                    }
                }
                var keys: [UInt32?] = []
                for try await key in group { keys.append(key) }
                return keys
            }
            let handedOut = fetched.compactMap { $0 }
            #expect(handedOut.count == 10)
            #expect(Set(handedOut) == Set(keys.oneTimePreKeys.map(\.keyId)))
            #expect(fetched.filter { $0 == nil }.count == 14)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

/// Contents of the sends a relay acknowledged, in order.
actor AcknowledgedSends {
    private(set) var contents: [Data] = []
    var count: Int { contents.count }
    func add(_ content: Data) { contents.append(content) }
}
