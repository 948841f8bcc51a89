import Glibc
import LabCore

/// A serial port is one device's: two programs writing to it interleave their commands, and one's
/// safe state lands in the middle of the other's run. Each open port is claimed with a POSIX write
/// lock on the whole device file: another process (a `serendip driver test` beside the daemon, a
/// second daemon) is refused before it sends anything. The lock is the process's, so the daemon's
/// own instruments, which may open a port again while an earlier handle is still about, never
/// refuse each other (TIOCEXCL would, and would not stop root anyway).
enum PortClaim {
    static func claim(_ fd: Int32, _ port: String) throws(LabError) {
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_SETLK, &lock) != 0 else { return }
        let failure = errno
        var holder = flock()
        holder.l_type = Int16(F_WRLCK)
        holder.l_whence = Int16(SEEK_SET)
        let pid = fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != Int16(F_UNLCK) ? " (process \(holder.l_pid))" : ""
        throw LabError(.instrumentLost, failure == EACCES || failure == EAGAIN
            ? "\(port) is in use by another program\(pid): a running `serendip serve`, a `serendip driver test`, a terminal program?; nothing was sent. Stop the other one first"
            : "\(port): cannot claim the port: \(String(cString: strerror(failure)))")
    }
}
