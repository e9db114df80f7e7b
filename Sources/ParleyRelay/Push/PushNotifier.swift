import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Prometheus

/// Content-free Web Push (RFC 8030) to offline devices: one push per burst (coalescing window),
/// retries with exponential backoff on 429/5xx/network errors, endpoint dropped on 404/410.
///
/// Every attempt goes through `PushEndpointPolicy`: the endpoint's host is resolved and checked, and the
/// request connects to that checked address (an HTTP client per attempt with a DNS override for the name:
/// no second resolution, TLS SNI and `Host` keep the name), follows no redirects, and counts against its
/// origin's push budget (`pushesPerSecondPerOrigin`).
actor PushNotifier {
    private let store: any RelayStore
    private let signer: VAPIDSigner
    private let limits: RelayLimits
    private let metrics: RelayMetrics
    private let logger: Logger
    private let policy: PushEndpointPolicy
    private let origins: RateLimiter
    /// Pushes not attempted: an origin over its budget, or a host that no longer resolves to a public address.
    private let refused: Counter
    private var scheduled: Set<DeviceAddress> = []

    init(
        store: any RelayStore, signer: VAPIDSigner, limits: RelayLimits, metrics: RelayMetrics, logger: Logger,
        policy: PushEndpointPolicy
    ) {
        self.store = store
        self.signer = signer
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
        self.policy = policy
        self.origins = RateLimiter(capacity: limits.pushBurstPerOrigin, ratePerSecond: limits.pushesPerSecondPerOrigin)
        self.refused = metrics.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "parley", subsystem: "relay", metricName: "pushes_refused", unitName: "total",
                helpText: "Web pushes not sent: origin over its rate, or endpoint host not a public address"))
    }

    /// New envelopes for devices that have no open WebSocket.
    func notify(_ addresses: [DeviceAddress]) {
        for address in addresses where !scheduled.contains(address) {
            scheduled.insert(address)
            let delay = Duration.milliseconds(limits.pushCoalesceMilliseconds)
            Task {
                try? await Task.sleep(for: delay)
                await self.deliver(address)
            }
        }
    }

    private func deliver(_ address: DeviceAddress) async {
        scheduled.remove(address)
        guard let stored = try? await store.pushEndpoint(address), let endpoint = try? policy.parse(stored) else { return }
        for attempt in 1...max(1, limits.pushMaxAttempts) {
            let outcome = await send(to: endpoint)
            switch outcome {
            case .delivered:
                metrics.pushes.increment()
                return
            case .gone:
                logger.notice("push endpoint gone; removed", metadata: ["device": "\(address.deviceId)"])
                try? await store.removePushEndpoint(address, ifEndpoint: stored)
                metrics.pushFailures.increment()
                return
            case .rejected(let status):
                logger.warning("push rejected", metadata: ["status": "\(status)"])
                metrics.pushFailures.increment()
                return
            case .originOverBudget:
                logger.debug("push dropped: origin over its rate", metadata: ["device": "\(address.deviceId)"])
                refused.increment()
                return
            case .notPublic:
                // The name now points to a non-public address (DNS rebinding, or a changed record): the endpoint
                // is removed, as a gone one would be.
                logger.notice("push endpoint no longer resolves to a public address; removed", metadata: ["device": "\(address.deviceId)"])
                try? await store.removePushEndpoint(address, ifEndpoint: stored)
                refused.increment()
                return
            case .retry:
                guard attempt < limits.pushMaxAttempts else { break }
                let backoff = limits.pushBackoffBaseMilliseconds * (Int64(1) << Int64(attempt - 1))
                try? await Task.sleep(for: .milliseconds(backoff))
            }
        }
        logger.warning("push failed after retries", metadata: ["device": "\(address.deviceId)"])
        metrics.pushFailures.increment()
    }

    private enum Outcome {
        case delivered, gone, retry, originOverBudget, notPublic
        case rejected(UInt)
    }

    private func send(to endpoint: PushEndpointPolicy.Endpoint) async -> Outcome {
        guard origins.allow(endpoint.origin) else { return .originOverBudget }
        let address: SocketAddress
        do {
            address = try await policy.address(of: endpoint)
        } catch {
            switch error {
            case .doesNotResolve: return .retry
            case .notPublic: return .notPublic
            }
        }
        guard let ip = address.ipAddress, let url = URL(string: endpoint.url) else { return .notPublic }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(
            connect: .seconds(RelayLimits.pushRequestTimeoutSeconds), read: .seconds(RelayLimits.pushRequestTimeoutSeconds))
        configuration.dnsOverride = [endpoint.host: ip]
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let outcome: Outcome
        do {
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            request.headers.add(name: "Authorization", value: try signer.authorization(for: url))
            request.headers.add(name: "TTL", value: "\(limits.pushTTLSeconds)")
            request.headers.add(name: "Urgency", value: "high")
            request.headers.add(name: "Content-Length", value: "0")
            let response = try await client.execute(request, timeout: .seconds(RelayLimits.pushRequestTimeoutSeconds))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200..<300: outcome = .delivered
            case 404, 410: outcome = .gone
            case 429, 500..<600: outcome = .retry
            default: outcome = .rejected(response.status.code)  // 3xx included: redirects are not followed
            }
        } catch {
            outcome = .retry
        }
        try? await client.shutdown()
        return outcome
    }
}
