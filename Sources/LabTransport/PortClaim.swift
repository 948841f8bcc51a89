import Glibc
public import LabCore

/// A serial port is one device's: two programs writing to it interleave their commands, and one's
/// safe state lands in the middle of the other's run. Each open port is claimed with an exclusive
/// flock, as pyserial's `exclusive=True` does (TIOCEXCL would not stop root); a port someone else
/// holds is refused before anything is sent.
enum PortClaim {
    static func claim(_ fd: Int32, _ port: String) throws(LabError) {
        guard flock(fd, LOCK_EX | LOCK_NB) != 0 else { return }
        let busy = errno == EWOULDBLOCK
        throw LabError(.instrumentLost, busy
            ? "\(port) is in use by another program (a running `serendip serve`, a `serendip driver test`, a terminal program?); nothing was sent. Stop the other one, or test through the daemon's simulator"
            : "\(port): cannot claim the port: \(String(cString: strerror(errno)))")
    }
}
