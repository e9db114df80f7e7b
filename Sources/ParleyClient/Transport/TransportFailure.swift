import AsyncHTTPClient
import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the relay could not be reached, in a few words ("connection refused", "connection timed out"), for
/// one-line error messages: a transport error from the HTTP or WebSocket stack otherwise prints as a nested
/// dump of NIO types and errno numbers.
public enum TransportFailure {
    /// The reason `error` is a failure to reach the relay, or nil when it is something else (a relay answer,
    /// a store or protocol error).
    public static func reason(_ error: any Error) -> String? {
        switch error {
        case is RelayClientError, is ClientError, is DeviceStoreError, is PushError: return nil
        case let error as IOError: return describe(errno: error.errnoCode)
        case let error as HTTPClientError:
            if error == .connectTimeout { return "connection timed out" }
            if error == .readTimeout || error == .deadlineExceeded { return "no answer (timed out)" }
            if error == .remoteConnectionClosed { return "the relay closed the connection" }
            if error == .cancelled { return "request cancelled" }
            if error == .invalidURL || error == .emptyHost || error == .emptyScheme { return "not a usable relay URL" }
        default: break
        }
        // NIO's connection errors (NIOConnectionError: "Connection errors: …", each ending in "(errno: N)";
        // "DNS error: …" when the name did not resolve) are matched by their text: their type is NIOPosix's.
        let text = String(describing: error)
        if let range = text.range(of: "(errno: "), let end = text[range.upperBound...].firstIndex(of: ")"),
           let code = Int32(text[range.upperBound..<end])
        {
            return describe(errno: code)
        }
        if text.hasPrefix("DNS error") || text.contains("NIODNS") || text.contains("EAI_") { return "cannot resolve the host name" }
        if text.contains("connectTimeout") || text.contains("connectionTimeout") { return "connection timed out" }
        return nil
    }

    /// `strerror` in lower case ("connection refused"), stable words for the common ones.
    static func describe(errno code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "connection refused"
        case ETIMEDOUT: return "connection timed out"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        case ECONNRESET: return "connection reset"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}
