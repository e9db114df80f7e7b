#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of one device store — the database and SQLite's `-wal` and `-shm` companions —
/// and their owner-only permissions (0600).
///
/// The database file is created by the store itself with mode 0600 before SQLite opens it, so
/// it is never readable by others, whatever the process umask. SQLite creates `-wal` and `-shm`
/// with the database file's mode; `restrictPermissions` re-applies 0600 to each file that exists
/// after opening, as a second line of defence (and to tighten a file copied in with wider bits).
struct StoreFiles: Sendable {
    static let mode: mode_t = 0o600

    let path: String

    var all: [String] { [path, path + "-wal", path + "-shm"] }

    func exists() -> Bool {
        access(path, F_OK) == 0
    }

    /// Creates the empty database file, failing if anything exists at `path`.
    func createExclusive() throws(DeviceStoreError) {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, Self.mode)
        guard fd >= 0 else {
            if errno == EEXIST { throw .alreadyExists(path: path) }
            throw .io(path: path, errno: errno)
        }
        // The mode passed to open(2) is filtered by the umask; set it exactly.
        let status = fchmod(fd, Self.mode)
        let savedErrno = errno
        close(fd)
        guard status == 0 else { throw .io(path: path, errno: savedErrno) }
    }

    /// Sets 0600 on each of the store's files that exists.
    func restrictPermissions() throws(DeviceStoreError) {
        for file in all where access(file, F_OK) == 0 {
            guard chmod(file, Self.mode) == 0 else { throw .io(path: file, errno: errno) }
        }
    }

    /// Removes the store's files (used when `create` fails half-way).
    func removeAll() {
        for file in all { unlink(file) }
    }
}
