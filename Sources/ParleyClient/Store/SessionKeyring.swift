import CParleyKeyring
import Foundation
import ParleyCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Store keys kept in the Linux kernel's **session keyring** between commands (`parley unlock` /
/// `parley lock`), so that Argon2id runs once per login session rather than once per command.
///
/// * One `user` key per store, described `parley:store:<absolute path of the store file>`; its payload
///   is the 32-byte `StoreKey`.
/// * Permissions `possessor: all; user: view` (0x3f010000): only processes that possess the session
///   keyring (the login session's processes, which are this user's) can read it; other processes of
///   the same user outside the session see that it exists, not its bytes. Root can read any key.
/// * A timeout (`defaultTimeout`, or the caller's): the kernel expires the key and frees its payload.
/// * `forget` revokes the key (its payload is freed at once) and unlinks it from the keyring.
///
/// Where the kernel has no keyring or forbids the syscalls (a container's seccomp profile, macOS),
/// every call reports `KeyringError.unavailable` and callers derive the key per command.
public enum SessionKeyring {
    /// How long an unlock lasts unless the caller says otherwise: 15 minutes, sudo's default for the
    /// same trade-off (a working session does not re-type the passphrase; a forgotten unlocked terminal
    /// locks itself soon).
    public static let defaultTimeout: UInt32 = 15 * 60
    /// The longest unlock accepted: one day.
    public static let maximumTimeout: UInt32 = 24 * 60 * 60
    /// possessor: view, read, write, search, link, setattr; user: view; group and other: nothing.
    static let permissions: UInt32 = 0x3f01_0000

    /// Why the keyring could not be used.
    public enum KeyringError: Error, Equatable, Sendable, CustomStringConvertible {
        /// No session keyring or the syscalls are refused (errno from the kernel).
        case unavailable(errno: Int32)
        /// A keyring operation failed on an available keyring (quota exceeded, ...).
        case failed(operation: String, errno: Int32)

        public var description: String {
            switch self {
            case .unavailable(let code): return "the kernel's session keyring is not available (\(String(cString: strerror(code))))"
            case .failed(let operation, let code): return "keyring \(operation) failed (\(String(cString: strerror(code))))"
            }
        }
    }

    /// The key's description for the store file at `path` (made absolute and resolved, so that two
    /// spellings of one path name one key).
    public static func description(forStore path: String) -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let name = realpath(absolute, &resolved) != nil ? String(cString: resolved) : absolute
        return "parley:store:" + name
    }

    /// nil when the session keyring can be used, else why not.
    public static func availability() -> KeyringError? {
        parley_keyring_session_id() >= 0 ? nil : .unavailable(errno: errno)
    }

    /// Keeps `key` for the store at `path` for `timeout` seconds (replacing an earlier one).
    public static func store(_ key: StoreKey, forStore path: String, timeout: UInt32 = defaultTimeout) throws(KeyringError) {
        if let unavailable = availability() { throw unavailable }
        let name = description(forStore: path)
        let serial = key.withBytes { bytes in parley_keyring_add_session(name, bytes.baseAddress, bytes.count) }
        guard serial >= 0 else { throw .failed(operation: "add_key", errno: errno) }
        guard parley_keyring_set_permissions(serial, permissions) == 0 else {
            let code = errno
            _ = parley_keyring_revoke(serial)
            throw .failed(operation: "setperm", errno: code)
        }
        guard parley_keyring_set_timeout(serial, min(max(timeout, 1), maximumTimeout)) == 0 else {
            let code = errno
            _ = parley_keyring_revoke(serial)
            throw .failed(operation: "set_timeout", errno: code)
        }
    }

    /// The key kept for the store at `path`, or nil (none, expired, revoked, or no keyring).
    public static func lookup(forStore path: String) -> StoreKey? {
        let serial = parley_keyring_search_session(description(forStore: path))
        guard serial >= 0 else { return nil }
        let size = KeyDerivationParameters.keySize
        var length = -1
        let secret = SecretBytes(count: size) { buffer in
            length = parley_keyring_read(serial, buffer.baseAddress, buffer.count)
        }
        guard length == size else { return nil }
        return StoreKey(bytes: secret)
    }

    /// Revokes and unlinks the key kept for the store at `path`. Whether there was one.
    @discardableResult
    public static func forget(forStore path: String) -> Bool {
        let serial = parley_keyring_search_session(description(forStore: path))
        guard serial >= 0 else { return false }
        _ = parley_keyring_revoke(serial)
        _ = parley_keyring_unlink_session(serial)
        return true
    }
}
