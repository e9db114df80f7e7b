import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Presence and typing", .timeLimit(.minutes(3)))
struct PresenceTests {
    @Test func presenceChangesReachSubscribers() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        // Presence and typing go only between contacts (MetadataTests covers strangers).
        try await relay.makeContacts(alice, bob)

        let bobWS = try await relay.connect(bob)
        _ = try await bobWS.backlog()
        try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
        let initial = try #require(await bobWS.next(.presence))
        #expect(initial.account == alice.account)
        #expect(initial.online == false)
        #expect(initial.lastSeen != nil)  // alice connected while the contact messages were read

        let aliceWS = try await relay.connect(alice)
        let online = try #require(await bobWS.next(.presence))
        #expect(online.online == true)

        // Typing: ephemeral, forwarded live only.
        try aliceWS.send(ClientFrame(type: .typing, to: bob.account, started: true))
        let typing = try #require(await bobWS.next(.typing))
        #expect(typing.account == alice.account)
        #expect(typing.started == true)

        await aliceWS.close()
        let offline = try #require(await bobWS.next(.presence))
        #expect(offline.online == false)
        #expect(offline.lastSeen != nil)
        await bobWS.close()

        // Typing was never queued.
        let bobAgain = try await relay.connect(bob)
        #expect(try await bobAgain.backlog().isEmpty)
        await bobAgain.close()
        try await relay.stop()
    }

    @Test func flappingIsCoalesced() async throws {
        var limits = RelayLimits()
        limits.presenceCoalesceMilliseconds = 5_000
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        try await relay.makeContacts(alice, bob)
        let bobWS = try await relay.connect(bob)
        _ = try await bobWS.backlog()
        try bobWS.send(ClientFrame(type: .subscribePresence, accounts: [alice.account]))
        #expect(try #require(await bobWS.next(.presence)).online == false)

        // Connect and disconnect quickly, several times: the state at the end equals the reported one.
        let started = ContinuousClock.now
        for _ in 0..<3 {
            let ws = try await relay.connect(alice)
            _ = try await ws.backlog()
            await ws.close()
        }
        let quick = ContinuousClock.now - started < .milliseconds(2_000)
        // Whatever is reported ends offline. The last report comes a coalescing window (5 s) after the last
        // change the relay saw (later on a loaded machine, where it may see the closes after this loop ends).
        var reports: [ServerFrame] = []
        while let frame = await bobWS.next(.presence, timeout: .seconds(15)) { reports.append(frame) }
        #expect(reports.last == nil || reports.last?.online == false)
        if quick {
            // Six changes within 2 s: at most one window ends mid-flap, the next one reports offline (usually
            // nothing at all is reported, the state at the end of the window being the reported one).
            #expect(reports.count <= 2, "\(reports.count) presence reports for six changes within 2 s")
        }
        await bobWS.close()
        try await relay.stop()
    }
}
