import Foundation
import ParleyWire
import Testing
@testable import ParleyRelay

@Suite("Accounts, devices and authentication", .timeLimit(.minutes(3)))
struct AccountTests {
    @Test func healthAndRegistration() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let health = try await http.call(.GET, "/healthz")
        #expect(health.status == 200)
        #expect(try health.decode(HealthResponse.self).status == "ok")

        let name = Fixtures.uniqueName("alice")
        let keys = Fixtures.keys(registrationId: 4242)
        let alice = try await http.register(name, keys: keys)
        #expect(alice.deviceId == 1)
        #expect(alice.credential.count == 43)

        let devices = try await http.call(.GET, "/v1/devices", alice)
        #expect(devices.status == 200)
        let list = try devices.decode(DeviceListResponse.self)
        #expect(list.devices.map(\.deviceId) == [1])
        #expect(list.devices.first?.registrationId == 4242)

        let again = try await http.call(.POST, "/v1/accounts", body: RegisterAccountRequest(name: name, device: keys))
        #expect(again.status == 409)
        #expect(again.error?.code == .nameTaken)

        let bad = try await http.call(.POST, "/v1/accounts", body: RegisterAccountRequest(name: "Bad.Name", device: keys))
        #expect(bad.status == 400)
        #expect(bad.error?.code == .invalidField)
        try await relay.stop()
    }

    @Test func authenticationFailures() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))

        let none = try await http.call(.GET, "/v1/devices")
        #expect(none.status == 401)
        #expect(none.error?.code == .unauthorized)

        var wrong = alice
        wrong.credential = Credentials.newToken()
        #expect(try await http.call(.GET, "/v1/devices", wrong).status == 401)

        var otherDevice = alice
        otherDevice.deviceId = 7
        #expect(try await http.call(.GET, "/v1/devices", otherDevice).status == 401)

        var unknown = alice
        unknown.account = "nobody-here"
        #expect(try await http.call(.GET, "/v1/devices", unknown).status == 401)

        let garbage = try await http.raw(.GET, "/v1/devices", authorization: "Basic !!!notbase64")
        #expect(garbage.status == 401)

        // WebSocket upgrade without / with wrong credentials is refused (HTTP 401, no upgrade).
        let anonymous = try await WSTestClient.connect(port: relay.port, authorization: nil)
        #expect(await anonymous.failed())
        let wrongWS = try await WSTestClient.connect(port: relay.port, credentials: wrong)
        #expect(await wrongWS.failed())
        // Browser-style: a one-time ticket instead of the header.
        let ticket = try await http.call(.POST, "/v1/ws/tickets", alice).decode(WebSocketTicketResponse.self)
        let ticketed = try await WSTestClient.connect(port: relay.port, authorization: nil, query: "?ticket=\(ticket.ticket)")
        #expect(await ticketed.next(.queueEmpty) != nil)
        await ticketed.close()
        let reused = try await WSTestClient.connect(port: relay.port, authorization: nil, query: "?ticket=\(ticket.ticket)")
        #expect(await reused.failed())
        let good = try await relay.connect(alice)
        #expect(await good.next(.queueEmpty) != nil)
        await good.close()
        try await relay.stop()
    }

    @Test func linkListAndRemoveDevices() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))

        // Link a second device: code -> claim (pending) -> approve (blob forwarded) -> active.
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let newKeys = Fixtures.keys(registrationId: 777)
        let claimReply = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: newKeys))
        #expect(claimReply.status == 201)
        let second = try claimReply.decode(DeviceCredentials.self)
        #expect(second.deviceId == 2)
        #expect(second.account == alice.account)

        // Pending: not usable except for the link status.
        #expect(try await http.call(.GET, "/v1/devices", second).status == 401)
        let pending = try await http.call(.GET, "/v1/devices/links/status", second).decode(LinkStatusResponse.self)
        #expect(pending.state == .claimed)
        #expect(try await http.devices(of: alice.account, alice).count == 1)

        // A claimed code cannot be claimed twice.
        let twice = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: Fixtures.keys()))
        #expect(twice.status == 409)
        #expect(twice.error?.code == .linkCodeUnavailable)

        let info = try await http.call(.GET, "/v1/devices/links/\(code.code)", alice).decode(LinkClaimInfo.self)
        #expect(info.state == .claimed)
        #expect(info.registrationId == 777)
        #expect(info.identityKey == newKeys.identityKey)

        let blob = Fixtures.bytes(200)
        let approve = try await http.call(
            .POST, "/v1/devices/links/\(code.code)/approve", alice, body: ApproveLinkRequest(provisioningBlob: blob))
        #expect(approve.status == 204)
        let approved = try await http.call(.GET, "/v1/devices/links/status", second).decode(LinkStatusResponse.self)
        #expect(approved.state == .approved)
        #expect(approved.provisioningBlob == blob)

        let devices = try await http.call(.GET, "/v1/devices", second).decode(DeviceListResponse.self).devices
        #expect(devices.map(\.deviceId) == [1, 2])
        #expect(devices.map(\.registrationId).contains(777))

        // Another account cannot approve or inspect this code, or remove alice's devices.
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        #expect(try await http.call(.GET, "/v1/devices/links/\(code.code)", bob).status == 404)
        #expect(try await http.call(.DELETE, "/v1/devices/2", bob).status == 404)

        let secondWS = try await relay.connect(second)
        _ = try await secondWS.backlog()
        let removed = try await http.call(.DELETE, "/v1/devices/2", alice)
        #expect(removed.status == 204)
        #expect(try await http.devices(of: alice.account, alice).map(\.deviceId) == [1])
        #expect(try await http.call(.GET, "/v1/devices", second).status == 401)
        // Its open WebSocket was closed.
        #expect(await secondWS.waitClosed())
        await secondWS.close()
        try await relay.stop()
    }

    @Test func unapprovedLinksExpireAndFreeTheirSlot() async throws {
        var limits = RelayLimits()
        limits.maxDevicesPerAccount = 2
        // Long enough for the claim below even on a loaded machine; short enough to wait out.
        limits.linkCodeTTLSeconds = 4
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let claim = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: Fixtures.keys()))
        #expect(claim.status == 201)
        let pending = try claim.decode(DeviceCredentials.self)

        // Too late to approve.
        try await Task.sleep(for: .milliseconds(4_200))
        let late = try await http.call(
            .POST, "/v1/devices/links/\(code.code)/approve", alice, body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(8)))
        #expect(late.status == 409)
        #expect(late.error?.code == .linkCodeUnavailable)

        // The sweep deletes the pending device: credentials dead, slot free again.
        await ExpiryService(core: relay.running.core).sweep()
        #expect(try await http.call(.GET, "/v1/devices/links/status", pending).status == 401)
        let second = try await http.link(from: alice)
        #expect(second.deviceId == 3)
        try await relay.stop()
    }

    @Test func deviceLimit() async throws {
        var limits = RelayLimits()
        limits.maxDevicesPerAccount = 2
        let relay = try await TestRelay.start(limits: limits)
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        _ = try await http.link(from: alice)
        let code = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let third = try await http.call(
            .POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: Fixtures.keys()))
        #expect(third.status == 409)
        #expect(third.error?.code == .tooManyDevices)
        try await relay.stop()
    }
}
