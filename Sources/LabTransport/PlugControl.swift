import Dispatch
import Glibc
import Synchronization

/// Lets a test unplug and plug in a simulated device served by a thread of its own. The serving
/// thread owns every descriptor, so it does the closing and opening itself: a caller asks, wakes it
/// through a pipe it polls, and waits until it is done (so "unplugged" is true when `unplug()` returns).
/// The pipe is made on the first request: a lab of simulators that is never unplugged spends no
/// descriptors on it (libmodbus's server cannot serve a descriptor above 1023).
final class PlugControl: Sendable {
    private let pipeFDs = Mutex<(read: Int32, write: Int32)?>(nil)
    private let wanted = Mutex<Bool?>(nil)
    private let applied = DispatchSemaphore(value: 0)
    private let asking = Mutex(())

    init() {}

    deinit {
        if let fds = pipeFDs.withLock({ $0 }) { Glibc.close(fds.read); Glibc.close(fds.write) }
    }

    /// The read end, for the serving thread's poll set; -1 (ignored by poll) until the first request.
    var wakeFD: Int32 { pipeFDs.withLock { $0?.read ?? -1 } }

    /// Called by a client of the server; returns once the serving thread applied it (the first
    /// time after its current poll times out, as it does not poll the pipe yet).
    func request(plugged: Bool) {
        asking.withLock { _ in
            wanted.withLock { $0 = plugged }
            let fd = pipeFDs.withLock { fds -> Int32 in
                if fds == nil {
                    var ends: [Int32] = [0, 0]
                    precondition(pipe(&ends) == 0, "cannot create a pipe")
                    for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC); _ = fcntl(end, F_SETFL, O_NONBLOCK) }
                    fds = (ends[0], ends[1])
                }
                return fds!.write
            }
            var byte: UInt8 = 1
            _ = Glibc.write(fd, &byte, 1)
            applied.wait()
        }
    }

    /// Wakes the serving thread without asking anything (to make it see that it is stopping).
    func wake() {
        guard let fd = pipeFDs.withLock({ $0?.write }) else { return }
        var byte: UInt8 = 0
        _ = Glibc.write(fd, &byte, 1)
    }

    /// Called by the serving thread after a poll: the state asked for, if any (then `done()` must follow).
    func take() -> Bool? {
        let fd = wakeFD
        if fd >= 0 {
            var buffer = [UInt8](repeating: 0, count: 16)
            while buffer.withUnsafeMutableBytes({ Glibc.read(fd, $0.baseAddress, $0.count) }) > 0 {}
        }
        return wanted.withLock { value in defer { value = nil }; return value }
    }

    func done() { applied.signal() }
}
