import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyWire
import Testing
@testable import ParleyRelay

/// Issue 12: the history archive of a link goes through its own route with its own bound (128 MiB by default),
/// bound to the link: uploaded by the device that created the code while it is claimed, downloaded by the device
/// that claimed it, gone once acknowledged or swept with the link. Real relays over loopback at default limits.
@Suite("Link history archive", .timeLimit(.minutes(4)))
struct LinkHistoryTests {
    struct Link {
        let code: String
        let newDevice: DeviceCredentials
    }

    /// A relay, its client, alice and a link of hers claimed by a new device.
    static func relayWithClaimedLink() async throws -> (TestRelay, HTTPTestClient, DeviceCredentials, Link) {
        let relay = try await TestRelay.start()
        let alice = try await relay.http.register(Fixtures.uniqueName("alice"))
        return (relay, relay.http, alice, try await claimedLink(relay.http, from: alice))
    }

    /// A code created by `existing` and claimed by a new device (not approved).
    static func claimedLink(_ http: HTTPTestClient, from existing: DeviceCredentials) async throws -> Link {
        let code = try await http.call(.POST, "/v1/devices/links", existing).decode(LinkCodeResponse.self)
        let claim = try await http.call(.POST, "/v1/devices/links/claim", body: ClaimLinkRequest(code: code.code, device: Fixtures.keys()))
        #expect(claim.status == 201)
        return Link(code: code.code, newDevice: try claim.decode(DeviceCredentials.self))
    }

    static func upload(_ http: HTTPTestClient, _ link: Link, _ body: Data, as device: DeviceCredentials) async throws -> HTTPTestClient.Reply {
        try await http.raw(.PUT, "/v1/devices/links/\(link.code)/history", body: body, authorization: device.authorizationHeader)
    }

    static func download(_ http: HTTPTestClient, as device: DeviceCredentials) async throws -> HTTPTestClient.Reply {
        try await http.call(.GET, "/v1/devices/links/history", device)
    }

    /// 3.5 MiB (four pieces in the store) up and down byte for byte; only the linked device downloads, only the
    /// approving device uploads, only while claimed; gone after the acknowledgement.
    @Test func archiveIsBoundToItsLink() async throws {
        let relay = try await TestRelay.start()
        let http = relay.http
        let alice = try await http.register(Fixtures.uniqueName("alice"))
        let bob = try await http.register(Fixtures.uniqueName("bob"))
        let link = try await Self.claimedLink(http, from: alice)
        let archive = Fixtures.bytes(3 * 1024 * 1024 + 512 * 1024)

        // Another account can neither upload to alice's link nor download it.
        #expect(try await Self.upload(http, link, Fixtures.bytes(1_000), as: bob).status == 404)
        #expect(try await Self.upload(http, link, Fixtures.bytes(1_000), as: alice).status == 204)
        #expect(try await Self.download(http, as: bob).status == 404)

        // A second upload replaces the first (one archive per link).
        #expect(try await Self.upload(http, link, archive, as: alice).status == 204)
        let download = try await Self.download(http, as: link.newDevice)
        #expect(download.status == 200)
        #expect(download.body == archive)

        // Approved: no more uploads; the new device still downloads, then acknowledges.
        let approve = try await http.call(
            .POST, "/v1/devices/links/\(link.code)/approve", alice, body: ApproveLinkRequest(provisioningBlob: Fixtures.bytes(64), awaitIdentityUpload: true))
        #expect(approve.status == 204)
        let late = try await Self.upload(http, link, Fixtures.bytes(1_000), as: alice)
        #expect(late.status == 409)
        #expect(late.error?.code == .linkCodeUnavailable)
        #expect(try await Self.download(http, as: link.newDevice).body == archive)
        #expect(try await http.call(.DELETE, "/v1/devices/links/history", link.newDevice).status == 204)
        #expect(try await Self.download(http, as: link.newDevice).status == 404)

        // A code that is still open takes no archive.
        let open = try await http.call(.POST, "/v1/devices/links", alice).decode(LinkCodeResponse.self)
        let early = try await http.raw(
            .PUT, "/v1/devices/links/\(open.code)/history", body: Fixtures.bytes(100), authorization: alice.authorizationHeader)
        #expect(early.status == 409)
        try await relay.stop()
    }

    /// A `Content-Length` over the bound is refused from the head alone (the test never sends the body).
    @Test func uploadOverTheBoundIsRefusedBeforeItsBody() async throws {
        let (relay, http, alice, link) = try await Self.relayWithClaimedLink()
        let client = try RawHTTP(port: relay.port)
        let length = RelayLimits.defaultMaxLinkHistoryBytes + 1
        #expect(await client.write(
            "PUT /v1/devices/links/\(link.code)/history HTTP/1.1\r\nHost: relay\r\nAuthorization: \(alice.authorizationHeader)\r\n"
                + "Content-Type: application/octet-stream\r\nContent-Length: \(length)\r\n\r\n"))
        let response = try #require(await client.readResponse())
        #expect(response.status == 413)
        #expect(BodyLimitTests.errorCode(response) == .payloadTooLarge)
        client.close()
        #expect(try await Self.download(http, as: link.newDevice).status == 404)
        try await relay.stop()
    }

    /// Without a length (chunked), the upload is cut off with 413 once it passes the bound, and nothing of it is
    /// left to download.
    @Test func chunkedUploadIsCutOffPastTheBound() async throws {
        let (relay, http, alice, link) = try await Self.relayWithClaimedLink()
        let client = try RawHTTP(port: relay.port)
        #expect(await client.write(
            "PUT /v1/devices/links/\(link.code)/history HTTP/1.1\r\nHost: relay\r\nAuthorization: \(alice.authorizationHeader)\r\n"
                + "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        // 256 KiB chunks, up to 4 MiB past the bound, and no last chunk.
        let piece = Data(repeating: 0x5A, count: 256 * 1024)
        var chunk = Data((String(piece.count, radix: 16) + "\r\n").utf8)
        chunk.append(piece)
        chunk.append(Data("\r\n".utf8))
        for _ in 0..<(RelayLimits.defaultMaxLinkHistoryBytes / piece.count + 16) {
            guard await client.write(chunk) else { break }  // the relay answers and closes past the bound
        }
        let response = try #require(await client.readResponse())
        #expect(response.status == 413)
        #expect(BodyLimitTests.errorCode(response) == .payloadTooLarge)
        client.close()
        #expect(try await Self.download(http, as: link.newDevice).status == 404)
        try await relay.stop()
    }

    /// Store level, every backend: an archive goes with its link when the link expires unapproved, and an hour
    /// after the expiry of an approved link; the account's archives are bounded together.
    @Test(arguments: TestBackend.available)
    func archiveIsSweptWithItsLink(_ backend: TestBackend) async throws {
        let store = try await backend.makeStore()
        defer { TestBackend.closeLater(store) }
        let name = Fixtures.uniqueName("hist")
        let accountId = try await store.createAccount(name: name, device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 1_000)
        let creator = DeviceAddress(accountId: accountId, deviceId: 1)

        func claimed(expiresAt: Int64) async throws -> (String, DeviceAddress) {
            let code = "code-\(UUID().uuidString)"
            try await store.createLinkCode(creator, code: code, now: 1_000, expiresAt: expiresAt)
            let (_, deviceId) = try await store.claimLinkCode(
                code: code, device: Fixtures.keys(), credentialHash: Fixtures.bytes(32), now: 1_001, maxDevices: 6)
            return (code, DeviceAddress(accountId: accountId, deviceId: deviceId))
        }
        func put(_ code: String, _ pieces: [Data], maxAccountBytes: Int = 1 << 30) async throws {
            let allowance = try await store.beginLinkHistory(
                creator, code: code, now: 2_000, maxBytes: 1 << 30, maxAccountBytes: maxAccountBytes)
            #expect(allowance >= pieces.reduce(0) { $0 + $1.count })
            for (seq, piece) in pieces.enumerated() { try await store.appendLinkHistory(code: code, seq: seq, data: piece) }
            try await store.finishLinkHistory(code: code, now: 2_000)
        }

        // Unapproved: swept when the code expires.
        let (first, firstDevice) = try await claimed(expiresAt: 100_000)
        await #expect(throws: RelayError.forbidden("only the device that created the link uploads its history")) {
            _ = try await store.beginLinkHistory(
                DeviceAddress(accountId: accountId, deviceId: firstDevice.deviceId), code: first, now: 2_000, maxBytes: 10, maxAccountBytes: 10)
        }
        let pieces = [Fixtures.bytes(1_000), Fixtures.bytes(500)]
        try await put(first, pieces)
        let info = try await store.linkHistory(firstDevice)
        #expect(info.bytes == 1_500)
        #expect(info.pieces == 2)
        #expect(try await store.linkHistoryPiece(info.key, seq: 1) == pieces[1])
        _ = try await store.deleteExpired(now: 50_000)
        #expect(try await store.linkHistory(firstDevice).bytes == 1_500)
        _ = try await store.deleteExpired(now: 100_001)
        await #expect(throws: RelayError.self) { _ = try await store.linkHistory(firstDevice) }
        #expect(try await store.linkHistoryPiece(info.key, seq: 0) == nil)

        // Approved: kept an hour past the code's expiry, then swept.
        let (second, secondDevice) = try await claimed(expiresAt: 200_000)
        try await put(second, [Fixtures.bytes(10)], maxAccountBytes: 100)
        // The account's bound counts its other archives: 90 of 100 bytes left for a third link.
        let (third, _) = try await claimed(expiresAt: 200_000)
        #expect(try await store.beginLinkHistory(creator, code: third, now: 2_000, maxBytes: 1_000, maxAccountBytes: 100) == 90)
        try await store.abortLinkHistory(code: third)
        try await store.approveLink(
            accountId: accountId, code: second, provisioningBlob: Fixtures.bytes(8), awaitIdentityUpload: true, now: 3_000)
        let kept = RelayLimits.linkHistoryKeepSeconds * 1000
        _ = try await store.deleteExpired(now: 200_000 + kept)
        #expect(try await store.linkHistory(secondDevice).bytes == 10)
        _ = try await store.deleteExpired(now: 200_001 + kept)
        await #expect(throws: RelayError.self) { _ = try await store.linkHistory(secondDevice) }
    }
}
