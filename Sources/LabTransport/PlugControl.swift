import Dispatch
import Glibc
import Synchronization

/// Lets a test unplug and plug in a simulated device served by a thread of its own. The serving
/// thread owns every descriptor, so it does the closing and opening itself: a caller asks, wakes it
/// through a pipe it polls, and waits until it is done (so "unplugged" is true when `unplug()` returns).
final class PlugControl: Sendable {
    /// The read end, for the serving thread's poll set.
    let wakeFD: Int32
    private let writeFD: Int32
    private let wanted = Mutex<Bool?>(nil)
    private let applied = DispatchSemaphore(value: 0)
    private let asking = Mutex(())

    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "cannot create a pipe")
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC); _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        wakeFD = fds[0]; writeFD = fds[1]
    }

    deinit { Glibc.close(wakeFD); Glibc.close(writeFD) }

    /// Called by a client of the server; returns once the serving thread applied it.
    func request(plugged: Bool) {
        asking.withLock { _ in
            wanted.withLock { $0 = plugged }
            var byte: UInt8 = 1
            _ = Glibc.write(writeFD, &byte, 1)
            applied.wait()
        }
    }

    /// Wakes the serving thread without asking anything (to make it see that it is stopping).
    func wake() {
        var byte: UInt8 = 0
        _ = Glibc.write(writeFD, &byte, 1)
    }

    /// Called by the serving thread after a poll: the state asked for, if any (then `done()` must follow).
    func take() -> Bool? {
        var buffer = [UInt8](repeating: 0, count: 16)
        while buffer.withUnsafeMutableBytes({ Glibc.read(wakeFD, $0.baseAddress, $0.count) }) > 0 {}
        return wanted.withLock { value in defer { value = nil }; return value }
    }

    func done() { applied.signal() }
}
