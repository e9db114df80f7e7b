import ArgumentParser
import Foundation
import ParleyClient

/// `parley push register|unregister|status|key`: Web Push registration of this device (Specs/client.md,
/// "Push notifications").
struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Have the relay wake this device through a Web Push service while it is offline.",
        discussion: """
            The relay sends content-free pushes (no message, no sender) to the registered endpoint when messages
            wait for this device and it is not connected; the device then connects and fetches them. Create the
            subscription (in a browser or a UnifiedPush distributor) with the relay's key from `parley push key`
            as applicationServerKey, then register its JSON with `parley push register --subscription FILE`.
            """,
        subcommands: [Register.self, Unregister.self, Status.self, Key.self])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a push subscription: an endpoint URL, or a subscription JSON file as browsers export it.",
            discussion: """
                The JSON form is {"endpoint": "...", "keys": {"p256dh": "...", "auth": "..."}}. The keys are checked;
                the relay's pushes carry no payload, so only the endpoint is sent to it. The relay's push key is
                checked and remembered: if it changes, registering refuses until --accept-new-relay-key is given
                (a subscription made for the old key no longer works).
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The push endpoint URL (https://...).") var endpoint: String?
        @Option(help: "A subscription JSON file (- for standard input).") var subscription: String?
        @Option(help: "The subscription's p256dh key (base64url), with --auth.") var p256dh: String?
        @Option(help: "The subscription's auth secret (base64url), with --p256dh.") var auth: String?
        @Flag(help: "The relay's push key changed and this subscription was created for the new key: accept it.")
        var acceptNewRelayKey = false

        func validate() throws {
            guard (endpoint == nil) != (subscription == nil) else {
                throw ValidationError("give an endpoint URL or --subscription FILE (one of them)")
            }
            if subscription != nil && (p256dh != nil || auth != nil) {
                throw ValidationError("--p256dh and --auth go with an endpoint URL; a subscription file carries its keys")
            }
        }

        func run() async throws {
            try await guarded {
                let parsed = try readSubscription()
                let device = try options.openDevice()
                let registration: PushRegistration
                do {
                    registration = try await CLIError.wrap { try await device.registerPush(parsed, acceptNewRelayKey: acceptNewRelayKey) }
                } catch {
                    await device.close()
                    throw error
                }
                options.output.emit(
                    "push registered: \(registration.endpointHost) (relay key \(registration.vapidKey.fingerprint))",
                    [
                        "event": "pushRegistered", "host": .string(registration.endpointHost),
                        "relayKey": .string(registration.vapidKey.base64URL),
                    ])
                await device.close()
            }
        }

        private func readSubscription() throws -> WebPushSubscription {
            if let endpoint { return try CLIError.wrap { try WebPushSubscription(endpoint: endpoint, p256dh: p256dh, auth: auth) } }
            guard let subscription else { throw CLIError("give an endpoint URL or --subscription FILE") }
            let data: Data
            if subscription == "-" {
                data = FileHandle.standardInput.readData(ofLength: WebPushSubscription.maxJSONBytes + 1)
            } else {
                guard let handle = FileHandle(forReadingAtPath: subscription) else { throw CLIError("cannot read \(subscription)") }
                defer { try? handle.close() }
                data = (try? handle.read(upToCount: WebPushSubscription.maxJSONBytes + 1)) ?? Data()
            }
            return try CLIError.wrap { try WebPushSubscription.parse(json: data) }
        }
    }

    struct Unregister: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop pushes to this device.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let removed: PushRegistration?
                do {
                    removed = try await CLIError.wrap { try await device.unregisterPush() }
                } catch {
                    await device.close()
                    throw error
                }
                options.output.emit(
                    removed.map { "push unregistered (was \($0.endpointHost))" } ?? "push was not registered; the relay was told anyway",
                    ["event": "pushUnregistered", "host": removed.map { JSONValue.string($0.endpointHost) } ?? .null])
                await device.close()
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show whether this device is registered for push (the endpoint's host only) and whether the relay's key changed.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let status: PushStatus
                do {
                    status = try await CLIError.wrap { try await device.pushStatus() }
                } catch {
                    await device.close()
                    throw error
                }
                await device.close()
                let line: String
                if let registration = status.registration {
                    line = "push: registered at \(registration.endpointHost) since \(Output.time(registration.registeredAt)) UTC, relay key \(registration.vapidKey.fingerprint)"
                } else {
                    line = "push: not registered"
                }
                options.output.emit(
                    line,
                    [
                        "event": "pushStatus", "registered": .bool(status.registration != nil),
                        "host": status.registration.map { JSONValue.string($0.endpointHost) } ?? .null,
                        "registeredAt": status.registration.map { JSONValue.int($0.registeredAt) } ?? .null,
                        "relayKey": status.relayKey.map { JSONValue.string($0.base64URL) } ?? .null,
                        "keyChanged": .bool(status.keyChanged),
                    ])
                if status.keyChanged, let pinned = status.pinnedKey, let current = status.relayKey {
                    Console.error("parley: warning: \(PushError.vapidKeyChanged(pinned: pinned.base64URL, current: current.base64URL))")
                    throw ExitCode.failure
                }
                if let problem = status.relayKeyProblem { Console.error("parley: warning: relay key not checked: \(problem)") }
            }
        }
    }

    struct Key: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the relay's push (VAPID) key, checked, to create a subscription with (applicationServerKey).")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await guarded {
                let device = try options.openDevice()
                let key: VAPIDPublicKey
                do {
                    key = try await CLIError.wrap { try await device.relayVAPIDKey() }
                } catch {
                    await device.close()
                    throw error
                }
                await device.close()
                options.output.emit(key.base64URL, ["event": "pushKey", "relayKey": .string(key.base64URL), "fingerprint": .string(key.fingerprint)])
            }
        }
    }
}
