import Glibc
import LabCore

/// The data directory's files are readable by their owner only, whatever the umask.
enum PrivateFile {
    static let mode: mode_t = 0o600

    /// Creates `path` owner-only if it does not exist, so that it is never readable by others, even briefly.
    static func create(_ path: String) throws(LabError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw LabError(.storage, "cannot create \(path) (errno \(errno))") }
        close(fd)
    }

    /// Makes an existing file owner-only; a missing one is fine.
    static func restrict(_ path: String) throws(LabError) {
        guard chmod(path, mode) == 0 || errno == ENOENT else {
            throw LabError(.storage, "cannot make \(path) owner-only (mode 0600, errno \(errno))")
        }
    }
}
