import Dispatch
import Foundation
public import Glibc
public import LabCore
import Synchronization

/// An ASCII command/response line over a tty, driven with termios (as pyserial does), on its own
/// serial queue because reads block. A reply has no id to match it to its query, so after a timeout
/// or a reply that was not one (not text, longer than `maxLineBytes`) the line is left to fall silent
/// for a whole timeout, what arrives meanwhile discarded, before the next query goes out; and each
/// query drops stale input first. So a late reply to an earlier query is not taken as the answer to this one.
public actor SerialLine {
    /// Where the line is: a path, or a USB adapter looked up by serial number each time it is opened.
    public nonisolated let port: SerialPort
    public nonisolated let settings: SerialLineSettings
    public nonisolated let terminator: String
    public nonisolated let timeout: Double
    private let ports: SerialPortLister
    private let executor: SerialQueueExecutor
    private var fd: Int32 = -1
    /// The device path of the open descriptor, for messages.
    private var opened = ""

    /// Set after a timeout or garbage: the device may still be sending.
    private var unsettled = false

    /// The longest reply taken by default; a device streaming without a terminator is cut off here
    /// rather than read until the timeout. A query expecting more (a long array) says so.
    public static let maxLineBytes = 1 << 20

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Told every line sent and received, when the instrument's traffic is recorded.
    private let tap: TrafficTap?

    /// Run on every freshly opened line before anything else is sent (the driver file's `init:`).
    /// It is handed `ask(command, awaitsReply)`, which sends one line and returns its reply, if
    /// one is awaited. A greeting that throws fails the open, and the line is closed again.
    public typealias Greeting = @Sendable (_ ask: (_ command: String, _ awaitsReply: Bool) throws(LabError) -> String?) throws(LabError) -> Void

    /// What the instrument on this line asks of it: request spacing and a greeting.
    public struct Session: Sendable {
        public var minInterval: Double
        public var greeting: Greeting?
        public init(minInterval: Double = 0, greeting: Greeting? = nil) { self.minInterval = minInterval; self.greeting = greeting }
    }

    private let session = Mutex(Session())
    private var pacer = RequestPacer()

    /// Set by the instrument that owns the line, before its first request.
    public nonisolated func prepare(_ session: Session) { self.session.withLock { $0 = session } }

    /// The port as a lab config names it: `/dev/ttyUSB0` or `usb/FT4XYZ12`.
    public nonisolated var path: String { port.description }
    public nonisolated var baud: Int { settings.baud }

    public init(path: String, baud: Int = 9600, terminator: String = "\n", timeout: Double = 1, tap: TrafficTap? = nil) {
        self.init(port: .path(path), settings: SerialLineSettings(baud: baud), terminator: terminator, timeout: timeout, tap: tap)
    }

    public init(port: SerialPort, settings: SerialLineSettings, terminator: String = "\n", timeout: Double = 1,
                ports: @escaping SerialPortLister = SerialPorts.list, tap: TrafficTap? = nil) {
        self.port = port; self.settings = settings; self.terminator = terminator; self.timeout = timeout
        self.ports = ports; self.tap = tap
        executor = SerialQueueExecutor(label: "serendip.serial.\(port)")
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Sends one command and returns the reply line without its terminator. An unplugged adapter
    /// (a hang-up, EIO, or the device node gone) is `.instrumentLost`: the descriptor is closed, and
    /// the next call opens the port again, so a device that comes back at the same path (or, bound by
    /// its USB serial number, under any name) is used again. A reply longer than `maxReplyBytes`
    /// without its terminator is refused.
    public func query(_ command: String, maxReplyBytes: Int = SerialLine.maxLineBytes) throws(LabError) -> String {
        dropIfHungUp()
        return try exchange(openedDescriptor(), command, awaitsReply: true, limit: maxReplyBytes)!
    }

    /// Sends one command and waits for no reply (a SCPI command is silent unless it fails).
    public func send(_ command: String) throws(LabError) {
        dropIfHungUp()
        _ = try exchange(openedDescriptor(), command, awaitsReply: false)
    }

    private func exchange(_ fd: Int32, _ command: String, awaitsReply: Bool, limit: Int = SerialLine.maxLineBytes) throws(LabError) -> String? {
        if unsettled {
            waitForSilence(fd)
            unsettled = false
        }
        // Paced first, flushed after: a late reply arriving during the wait must not be taken as this one's.
        pacer.waitForTurn()
        tcflush(fd, TCIFLUSH)
        try send(fd, command + terminator)
        return awaitsReply ? try receiveLine(fd, limit: limit) : nil
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

    /// Opens the port, looking a USB adapter up again first (it may be back under another name).
    private func openedDescriptor() throws(LabError) -> Int32 {
        if fd >= 0 { return fd }
        let device = try port.devicePath(ports)
        opened = device == path ? device : "\(path) at \(device)"
        let descriptor = Glibc.open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw LabError(.instrumentLost, "\(opened): cannot open: \(String(cString: strerror(errno)))") }
        do throws(LabError) { try PortClaim.claim(descriptor, opened) } catch {
            Glibc.close(descriptor)
            throw error
        }
        var tio = termios()
        guard tcgetattr(descriptor, &tio) == 0 else {
            Glibc.close(descriptor)
            throw LabError(.transport, "\(opened): not a terminal")
        }
        do throws(LabError) {
            try Self.apply(settings, to: &tio)
        } catch {
            Glibc.close(descriptor)
            throw LabError(error.code, "\(opened): \(error.message)")
        }
        guard tcsetattr(descriptor, TCSANOW, &tio) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw LabError(.transport, "\(opened): cannot set \(settings.baud) baud, \(settings.dataBits)\(settings.parity.rawValue)\(settings.stopBits): \(reason)")
        }
        // A driver may quietly keep what its hardware cannot do (an FTDI adapter stays at 8 data bits
        // when asked for 5): a line at other settings than the device's reads garbage, so refuse it.
        var held = termios()
        tcgetattr(descriptor, &held)
        var status = stat()
        let pseudoTerminal = fstat(descriptor, &status) == 0 && (136...143).contains((status.st_rdev >> 8) & 0xfff)
        let unmet = Self.unmet(settings, held: held, pseudoTerminal: pseudoTerminal)
        guard unmet.isEmpty else {
            Glibc.close(descriptor)
            throw LabError(.transport, "\(opened) did not take \(unmet.joined(separator: ", ")); its adapter may not support them")
        }
        fd = descriptor
        let session = self.session.withLock { $0 }
        pacer.interval = session.minInterval
        if let greeting = session.greeting {
            do { try greeting { (command, awaitsReply) throws(LabError) in try exchange(descriptor, command, awaitsReply: awaitsReply) } } catch {
                close()
                throw error
            }
        }
        return descriptor
    }

    /// The settings a tty did not take, as a person names them. A Linux pseudo-terminal always
    /// reports 8 data bits without parity, so those two are not checked on one.
    public static func unmet(_ settings: SerialLineSettings, held tio: termios, pseudoTerminal: Bool) -> [String] {
        var wanted = termios()
        do throws(LabError) { try apply(settings, to: &wanted) } catch { return ["\(settings.baud) baud"] }
        var held = tio
        var unmet: [String] = []
        if cfgetospeed(&held) != cfgetospeed(&wanted) { unmet.append("\(settings.baud) baud") }
        if !pseudoTerminal {
            if held.c_cflag & tcflag_t(CSIZE) != wanted.c_cflag & tcflag_t(CSIZE) { unmet.append("\(settings.dataBits) data bits") }
            if held.c_cflag & tcflag_t(PARENB | PARODD) != wanted.c_cflag & tcflag_t(PARENB | PARODD) { unmet.append("parity \(settings.parity.rawValue)") }
        }
        if held.c_cflag & tcflag_t(CSTOPB) != wanted.c_cflag & tcflag_t(CSTOPB) { unmet.append("\(settings.stopBits) stop bits") }
        let flow = (held.c_cflag & tcflag_t(CRTSCTS), held.c_iflag & tcflag_t(IXON | IXOFF))
        if flow != (wanted.c_cflag & tcflag_t(CRTSCTS), wanted.c_iflag & tcflag_t(IXON | IXOFF)) {
            unmet.append("flow control \(settings.flowControl.rawValue)")
        }
        return unmet
    }

    /// Raw bytes framed and paced as `settings` say: a pure function of the settings, tested for
    /// every combination (a pseudo-terminal cannot show all of them: Linux forces its CS8 without parity).
    public static func apply(_ settings: SerialLineSettings, to tio: inout termios) throws(LabError) {
        guard let speed: speed_t = speeds[settings.baud] else {
            throw LabError(.invalidFile, "\(settings.baud) baud is not a rate termios can set")
        }
        cfmakeraw(&tio)
        cfsetispeed(&tio, speed)
        cfsetospeed(&tio, speed)
        tio.c_cflag |= tcflag_t(CLOCAL | CREAD)
        tio.c_cflag &= ~(tcflag_t(CSIZE | PARENB | PARODD | CSTOPB) | tcflag_t(CRTSCTS))
        let size = switch settings.dataBits {
        case 5: tcflag_t(CS5)
        case 6: tcflag_t(CS6)
        case 7: tcflag_t(CS7)
        default: tcflag_t(CS8)
        }
        tio.c_cflag |= size
        switch settings.parity {
        case .none: break
        case .even: tio.c_cflag |= tcflag_t(PARENB)
        case .odd: tio.c_cflag |= tcflag_t(PARENB | PARODD)
        }
        if settings.stopBits == 2 { tio.c_cflag |= tcflag_t(CSTOPB) }
        tio.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        switch settings.flowControl {
        case .none: break
        case .rtscts: tio.c_cflag |= tcflag_t(CRTSCTS)
        case .xonxoff: tio.c_iflag |= tcflag_t(IXON | IXOFF)
        }
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
                        throw LabError(.timeout, "\(opened): could not send within \(timeout) s")
                    }
                    usleep(100)
                    continue
                }
                close()
                throw LabError(.instrumentLost, "\(opened): write failed: \(String(cString: strerror(errno)))")
            }
            bytes = bytes.dropFirst(n)
        }
        tap?(.sent, Array(text.utf8))
    }

    /// A terminator as a driver file writes it: "\r\n".
    static func shown(_ text: String) -> String {
        "\"" + text.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\""
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
                // Bytes without the terminator mean the device spoke, in other words than the file says.
                let hint = line.isEmpty ? "" : "; \(line.count) byte(s) came without the terminator \(Self.shown(terminator)): check the driver file's terminator and baud"
                throw LabError(.timeout, "\(opened): no reply within \(timeout) s\(hint)")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32((deadline - now) / 1_000_000) + 1)
            if ready < 0 && errno != EINTR {
                close()
                throw LabError(.instrumentLost, "\(opened): poll failed: \(String(cString: strerror(errno)))")
            }
            if ready <= 0 { continue }
            if poller.revents & Int16(POLLHUP | POLLERR) != 0 && poller.revents & Int16(POLLIN) == 0 {
                close()
                throw LabError(.instrumentLost, "\(opened): device hung up")
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
                throw LabError(.instrumentLost, "\(opened): device hung up")
            }
        }
        let reply = line[..<found!.lowerBound]
        tap?(.received, Array(reply) + end)
        guard let text = String(bytes: reply, encoding: .utf8) else {
            unsettled = true
            throw LabError(.protocolViolation, "\(opened): reply is not text")
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
