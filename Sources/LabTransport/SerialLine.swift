import Dispatch
import Foundation
import Glibc
public import LabCore

/// An ASCII command/response line over a tty, driven with termios (as pyserial does), on its own
/// serial queue because reads block. A reply has no id to match it to its query, so after a timeout
/// or a reply that was not one (not text, longer than `maxLineBytes`) the line is left to fall silent
/// for a whole timeout, what arrives meanwhile discarded, before the next query goes out; and each
/// query drops stale input first. So a late reply to an earlier query is not taken as the answer to this one.
public actor SerialLine {
    public nonisolated let path: String
    public nonisolated let baud: Int
    public nonisolated let terminator: String
    public nonisolated let timeout: Double
    private let executor: SerialQueueExecutor
    private var fd: Int32 = -1
    /// Set after a timeout or garbage: the device may still be sending.
    private var unsettled = false

    /// The longest reply taken by default; a device streaming without a terminator is cut off here
    /// rather than read until the timeout. A query expecting more (a long array) says so.
    public static let maxLineBytes = 1 << 20

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Told every line sent and received, when the instrument's traffic is recorded.
    private let tap: TrafficTap?

    public init(path: String, baud: Int = 9600, terminator: String = "\n", timeout: Double = 1, tap: TrafficTap? = nil) {
        self.path = path; self.baud = baud; self.terminator = terminator; self.timeout = timeout; self.tap = tap
        executor = SerialQueueExecutor(label: "serendip.serial.\(path)")
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Sends one command and returns the reply line without its terminator. An unplugged adapter
    /// (a hang-up, EIO, or the device node gone) is `.instrumentLost`: the descriptor is closed, and
    /// the next call opens the path again, so a device that comes back at the same path is used again.
    public func query(_ command: String, maxReplyBytes: Int = SerialLine.maxLineBytes) throws(LabError) -> String {
        dropIfHungUp()
        let fd = try openedDescriptor()
        if unsettled {
            waitForSilence(fd)
            unsettled = false
        }
        tcflush(fd, TCIFLUSH)
        try send(fd, command + terminator)
        return try receiveLine(fd, limit: maxReplyBytes)
    }

    /// Opens the line if it is not open (or hung up while idle): a probe that sends nothing.
    public func open() throws(LabError) {
        dropIfHungUp()
        _ = try openedDescriptor()
    }

    /// A line that hung up while idle (the adapter was pulled and maybe plugged in again) is closed
    /// before anything is sent on it, so the command goes to the device now at the path.
    private func dropIfHungUp() {
        guard fd >= 0 else { return }
        var entry = pollfd(fd: fd, events: 0, revents: 0)
        if poll(&entry, 1, 0) > 0, entry.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { close() }
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        unsettled = false
    }

    /// Reads and discards until nothing has arrived for a whole timeout (or four timeouts passed:
    /// a device that never stops talking is not waited for forever).
    private func waitForSilence(_ fd: Int32) {
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(4 * timeout * 1e9)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while DispatchTime.now().uptimeNanoseconds < end {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(timeout * 1000) + 1) > 0, entry.revents & Int16(POLLIN) != 0 else { return }
            if buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) <= 0 && errno != EAGAIN && errno != EINTR { return }
        }
    }

    private func openedDescriptor() throws(LabError) -> Int32 {
        if fd >= 0 { return fd }
        let opened = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard opened >= 0 else { throw LabError(.instrumentLost, "\(path): cannot open: \(String(cString: strerror(errno)))") }
        var tio = termios()
        guard tcgetattr(opened, &tio) == 0 else {
            Glibc.close(opened)
            throw LabError(.transport, "\(path): not a terminal")
        }
        cfmakeraw(&tio)
        tio.c_cflag |= tcflag_t(CLOCAL | CREAD)
        guard let speed: speed_t = Self.speeds[baud] else {
            Glibc.close(opened)
            throw LabError(.invalidFile, "\(path): \(baud) baud is not a rate termios can set")
        }
        cfsetispeed(&tio, speed)
        cfsetospeed(&tio, speed)
        tcsetattr(opened, TCSANOW, &tio)
        fd = opened
        return opened
    }

    private func send(_ fd: Int32, _ text: String) throws(LabError) {
        var bytes = Array(text.utf8)[...]
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeout * 1e9)
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR {
                    // A device that never drains its input is as silent as one that never answers.
                    guard DispatchTime.now().uptimeNanoseconds < deadline else {
                        throw LabError(.timeout, "\(path): could not send within \(timeout) s")
                    }
                    usleep(100)
                    continue
                }
                close()
                throw LabError(.instrumentLost, "\(path): write failed: \(String(cString: strerror(errno)))")
            }
            bytes = bytes.dropFirst(n)
        }
        tap?(.sent, Array(text.utf8))
    }

    private func receiveLine(_ fd: Int32, limit: Int) throws(LabError) -> String {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeout * 1e9)
        let end = Array(terminator.utf8)
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // The reply is everything up to the first terminator; anything after it is dropped with the
        // next query's flush. Only the new bytes (and the terminator's length before them) are searched.
        var found: Range<Int>?
        while found == nil {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else {
                unsettled = true
                throw LabError(.timeout, "\(path): no reply within \(timeout) s")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32((deadline - now) / 1_000_000) + 1)
            if ready < 0 && errno != EINTR {
                close()
                throw LabError(.instrumentLost, "\(path): poll failed: \(String(cString: strerror(errno)))")
            }
            if ready <= 0 { continue }
            if poller.revents & Int16(POLLHUP | POLLERR) != 0 && poller.revents & Int16(POLLIN) == 0 {
                close()
                throw LabError(.instrumentLost, "\(path): device hung up")
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                let searchFrom = max(0, line.count - end.count + 1)
                line += chunk[..<n]
                found = line[searchFrom...].firstRange(of: end)
                if found == nil, line.count > limit {
                    unsettled = true
                    throw LabError(.protocolViolation, "\(path): no terminator in the first \(limit) bytes of the reply; is the terminator in the driver file the device's?")
                }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                close()
                throw LabError(.instrumentLost, "\(path): device hung up")
            }
        }
        let reply = line[..<found!.lowerBound]
        tap?(.received, Array(reply) + end)
        guard let text = String(bytes: reply, encoding: .utf8) else {
            unsettled = true
            throw LabError(.protocolViolation, "\(path): reply is not text")
        }
        return text.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
    }

    /// Every rate Linux termios has a constant for. Never fall back to another speed: a line opened
    /// at the wrong rate reads garbage that may still parse as numbers.
    public static let speeds: [Int: UInt32] = [
        50: speed_t(B50), 75: speed_t(B75), 110: speed_t(B110), 134: speed_t(B134), 150: speed_t(B150),
        200: speed_t(B200), 300: speed_t(B300), 600: speed_t(B600), 1200: speed_t(B1200), 1800: speed_t(B1800),
        2400: speed_t(B2400), 4800: speed_t(B4800), 9600: speed_t(B9600), 19200: speed_t(B19200),
        38400: speed_t(B38400), 57600: speed_t(B57600), 115200: speed_t(B115200), 230400: speed_t(B230400),
        460800: speed_t(B460800), 500000: speed_t(B500000), 576000: speed_t(B576000), 921600: speed_t(B921600),
        1000000: speed_t(B1000000), 1152000: speed_t(B1152000), 1500000: speed_t(B1500000),
        2000000: speed_t(B2000000), 2500000: speed_t(B2500000), 3000000: speed_t(B3000000),
        3500000: speed_t(B3500000), 4000000: speed_t(B4000000),
    ]
}
