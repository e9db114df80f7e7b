import AsyncHTTPClient
import Foundation
import Logging

/// Content-free Web Push (RFC 8030) to offline devices: one push per burst (coalescing window),
/// retries with exponential backoff on 429/5xx/network errors, endpoint dropped on 404/410.
actor PushNotifier {
    private let store: any RelayStore
    private let signer: VAPIDSigner
    private let limits: RelayLimits
    private let metrics: RelayMetrics
    private let logger: Logger
    private var scheduled: Set<DeviceAddress> = []

    init(store: any RelayStore, signer: VAPIDSigner, limits: RelayLimits, metrics: RelayMetrics, logger: Logger) {
        self.store = store
        self.signer = signer
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
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
        guard let endpoint = try? await store.pushEndpoint(address), let url = URL(string: endpoint) else { return }
        for attempt in 1...max(1, limits.pushMaxAttempts) {
            let outcome = await send(to: url, endpoint: endpoint)
            switch outcome {
            case .delivered:
                metrics.pushes.increment()
                return
            case .gone:
                logger.notice("push endpoint gone; removed", metadata: ["device": "\(address.deviceId)"])
                try? await store.removePushEndpoint(address, ifEndpoint: endpoint)
                metrics.pushFailures.increment()
                return
            case .rejected(let status):
                logger.warning("push rejected", metadata: ["status": "\(status)"])
                metrics.pushFailures.increment()
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
        case delivered, gone, retry
        case rejected(UInt)
    }

    private func send(to url: URL, endpoint: String) async -> Outcome {
        do {
            var request = HTTPClientRequest(url: endpoint)
            request.method = .POST
            request.headers.add(name: "Authorization", value: try signer.authorization(for: url))
            request.headers.add(name: "TTL", value: "\(limits.pushTTLSeconds)")
            request.headers.add(name: "Urgency", value: "high")
            request.headers.add(name: "Content-Length", value: "0")
            let response = try await HTTPClient.shared.execute(
                request, timeout: .seconds(RelayLimits.pushRequestTimeoutSeconds))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200..<300: return .delivered
            case 404, 410: return .gone
            case 429, 500..<600: return .retry
            default: return .rejected(response.status.code)
            }
        } catch {
            return .retry
        }
    }
}
