import Glibc
public import LabCore

/// One daemon owns one database: an exclusive lock on `<database>.lock`, held while the daemon
/// runs and released by the kernel if it dies. SQLite's own locks do not express ownership.
public final class DatabaseLock: Sendable {
    public let path: String
    private let fd: Int32

    public init(database: String) throws(LabError) {
        path = database + ".lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, PrivateFile.mode)
        guard fd >= 0 else { throw LabError(.storage, "cannot create lock file \(path)") }
        guard fchmod(fd, PrivateFile.mode) == 0 else {
            close(fd)
            throw LabError(.storage, "cannot make lock file \(path) owner-only (mode 0600)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw LabError(.storage, "another Serendip daemon owns \(database) (lock \(path) is held)")
        }
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
