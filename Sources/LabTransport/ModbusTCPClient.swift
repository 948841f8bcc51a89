import Dispatch
import Glibc
public import LabCore
import Synchronization

/// One Modbus TCP connection. Its actor runs on its own serial queue because each request blocks
/// for up to its timeout, and everything on one connection must be serialised.
///
/// The MBAP framing is done here rather than by libmodbus's client, because a reply must be matched
/// to its request: libmodbus 3.1.6 takes a reply from another unit id as the answer, reports a reply
/// to an earlier request (late, or sent twice) as the device's "Invalid data" without skipping it,
/// and its flush drops only bytes that have already arrived. Here a reply to another transaction is
/// skipped; a reply that does not fit the request (wrong unit, function or shape) is refused and the
/// connection dropped; after a timeout the connection is dropped too, so a late answer lands on a
/// closed socket. No value is ever returned for a request other than its own. Links are re-opened
/// here with a bounded backoff (never libmodbus's link recovery, which can retry forever).
public actor ModbusTCPClient {
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var unit: Int
        /// How long a request waits for its reply, and a connect for its answer (the driver file's `timeout:`).
        public var responseTimeout: Double
        /// Connects tried per request before the instrument is reported lost (nothing was sent).
        public var connectAttempts: Int

        public init(host: String, port: Int, unit: Int = 1, responseTimeout: Double = 1, connectAttempts: Int = 3) {
            self.host = host; self.port = port; self.unit = unit; self.responseTimeout = responseTimeout
            self.connectAttempts = max(1, connectAttempts)
        }

        public var description: String { "modbus-tcp://\(host):\(port)/\(unit)" }
    }

    public typealias Table = ModbusTable

    public nonisolated let endpoint: Endpoint
    private let executor: SerialQueueExecutor
    private var socket: Int32 = -1
    /// Bytes received and not yet taken as a frame: a reply is read whole in one recv where it can
    /// be, and what follows it (a duplicate, say) waits here as it would in the socket.
    private var inbox: [UInt8] = []
    /// Where recv writes, kept between requests rather than allocated for each.
    private var scratch = [UInt8](repeating: 0, count: 512)
    private var transactionID: UInt16 = 0

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Told every frame sent and received, when the instrument's traffic is recorded.
    private let tap: TrafficTap?

    private let session = Mutex(ModbusSession())
    private var pacer = RequestPacer()

    /// Set by the instrument that owns the connection, before its first request.
    public nonisolated func prepare(_ session: ModbusSession) { self.session.withLock { $0 = session } }

    public init(_ endpoint: Endpoint, tap: TrafficTap? = nil) {
        self.endpoint = endpoint
        self.tap = tap
        executor = SerialQueueExecutor(label: "serendip.modbus.\(endpoint.host):\(endpoint.port)")
    }

    deinit {
        if socket >= 0 { Glibc.close(socket) }
    }

    /// Reads registers; `retries` more attempts (on a fresh connection) when the link breaks or the
    /// device does not answer in time. Only for reads the driver file says are safe to repeat.
    public func readRegisters(_ table: Table, address: UInt16, count: Int, retries: Int = 0) throws(LabError) -> [UInt16] {
        precondition(table == .holding || table == .input)
        let data = try perform("read \(count) register(s) at \(address)",
                               [table == .holding ? 0x03 : 0x04] + address.bytes + UInt16(count).bytes, retries: retries) { data in
            data.count == 1 + 2 * count && Int(data[0]) == 2 * count
        }
        return (0..<count).map { UInt16(data[1 + 2 * $0]) << 8 | UInt16(data[2 + 2 * $0]) }
    }

    public func writeRegisters(address: UInt16, values: [UInt16]) throws(LabError) {
        let header = address.bytes + UInt16(values.count).bytes
        _ = try perform("write \(values.count) register(s) at \(address)",
                        [0x10] + header + [UInt8(2 * values.count)] + values.flatMap(\.bytes), retries: nil) { $0 == header }
    }

    public func readBits(_ table: Table, address: UInt16, count: Int, retries: Int = 0) throws(LabError) -> [Bool] {
        precondition(table == .coil || table == .discreteInput)
        let bytes = (count + 7) / 8
        let data = try perform("read \(count) bit(s) at \(address)",
                               [table == .coil ? 0x01 : 0x02] + address.bytes + UInt16(count).bytes, retries: retries) { data in
            data.count == 1 + bytes && Int(data[0]) == bytes
        }
        return (0..<count).map { (i: Int) -> Bool in (data[1 + i / 8] >> UInt8(i % 8)) & 1 != 0 }
    }

    public func writeBit(address: UInt16, _ value: Bool) throws(LabError) {
        let body = address.bytes + (value ? [0xFF, 0x00] : [0x00, 0x00])
        _ = try perform("write coil \(address)", [0x05] + body, retries: nil) { $0 == body }
    }

    /// Opens the connection if it is not open (or was closed by the device): a probe that sends nothing.
    public func connect() throws(LabError) {
        try refuseIfClosedByPeer("connect")
        do throws(Failure) { _ = try connectedSocket() } catch {
            if case .refused(let refusal) = error { throw refusal }
            throw LabError(.instrumentLost, "\(endpoint): \(error.message)")
        }
    }

    public func disconnect() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        inbox = []
    }

    /// Why one exchange did not return its answer. `sent` says whether any byte of the request may
    /// have left: only a request that never left can be sent again without asking the driver file.
    private enum Failure: Error {
        case broken(String, sent: Bool), timeout, mismatch(String), exception(UInt8)
        /// A step of the connection's greeting failed: reported as it is, never retried.
        case refused(LabError)

        var message: String {
            switch self {
            case .broken(let m, _), .mismatch(let m): m
            case .refused(let error): error.message
            case .timeout: "no reply"
            case .exception(let code): "exception \(code)"
            }
        }
    }

    /// Runs one request (a PDU: function code and data) and returns the reply's data after the
    /// function code. A request that never left (the connect failed) is tried again, a bounded number
    /// of times with a backoff doubling from 20 ms. One whose link broke, or that got no reply, after
    /// it was sent is repeated only if it is a read with `retries` left; a write (`retries: nil`) is
    /// never repeated, because the device may already have applied it.
    private func perform(_ request: @autoclosure () -> String, _ pdu: [UInt8], retries: Int?, fits: ([UInt8]) -> Bool) throws(LabError) -> [UInt8] {
        var connectFailures = 0, repeats = 0
        // The request is named only in an error: most requests never need the text.
        var what: String { request() }
        try refuseIfClosedByPeer(request())
        while true {
            do {
                return try exchange(connectedSocket(), pdu, fits: fits)
            } catch {
                switch error {
                case .broken(let message, sent: false):
                    disconnect()
                    connectFailures += 1
                    guard connectFailures < endpoint.connectAttempts else {
                        throw LabError(.instrumentLost, "\(endpoint): \(what): \(message)")
                    }
                    usleep(UInt32(20_000 << (connectFailures - 1)))
                case .broken(let message, sent: true):
                    disconnect()
                    guard let retries else {
                        throw LabError(.instrumentLost, "\(endpoint): \(what): \(message) after the request was sent; the device may or may not have applied it (not repeated)")
                    }
                    guard repeats < retries else { throw LabError(.instrumentLost, "\(endpoint): \(what): \(message)") }
                    repeats += 1
                case .timeout:
                    // The device may still answer: drop the connection so that answer is never read.
                    disconnect()
                    guard let retries else {
                        throw LabError(.timeout, "\(endpoint): \(what): no reply within \(endpoint.responseTimeout) s; the device may or may not have applied it (not repeated)")
                    }
                    guard repeats < retries else {
                        throw LabError(.timeout, "\(endpoint): \(what): no reply within \(endpoint.responseTimeout) s")
                    }
                    repeats += 1
                case .mismatch(let detail):
                    disconnect()
                    throw LabError(.transport, "\(endpoint): \(what): reply did not match the request (\(detail)); link resynchronised")
                case .exception(let code):
                    // The device answered with a Modbus exception: the link is fine, the request is not.
                    throw LabError(.protocolViolation, "\(endpoint): \(what): \(ModbusException.message(code))")
                case .refused(let error):
                    throw error
                }
            }
        }
    }

    /// A connection the device closed while idle (it restarted, or was unplugged and is back) is
    /// dropped, and reported as a loss before anything is sent: a device that restarted may have lost
    /// its setpoints, and a run that went on unaware would be wrong about the lab. The next request
    /// goes out on a fresh connection.
    private func refuseIfClosedByPeer(_ what: @autoclosure () -> String) throws(LabError) {
        guard socket >= 0 else { return }
        // 0x2000 is POLLRDHUP (the peer shut its side), which Swift's Glibc module does not export.
        var entry = pollfd(fd: socket, events: Int16(POLLIN | 0x2000), revents: 0)
        guard poll(&entry, 1, 0) > 0 else { return }
        var closed = entry.revents & Int16(POLLHUP | POLLERR | 0x2000) != 0
        if !closed {
            // Readable: a late reply (skipped later by its transaction id) or the end of the stream.
            var byte: UInt8 = 0
            closed = recv(socket, &byte, 1, Int32(MSG_PEEK)) == 0
        }
        guard closed else { return }
        disconnect()
        throw LabError(.instrumentLost, "\(endpoint): \(what()): the device closed the connection since the last request "
                       + "(did it restart? its state may have changed); nothing was sent")
    }

    private func exchange(_ fd: Int32, _ pdu: [UInt8], fits: ([UInt8]) -> Bool) throws(Failure) -> [UInt8] {
        transactionID &+= 1
        let id = transactionID, unit = UInt8(endpoint.unit)
        let frame = id.bytes + [0, 0] + UInt16(pdu.count + 1).bytes + [unit] + pdu
        pacer.waitForTurn()
        try send(fd, frame)
        tap?(.sent, frame)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(endpoint.responseTimeout * 1e9)
        while true {
            let header = try receive(fd, count: 7, before: deadline)
            let length = Int(header[4]) << 8 | Int(header[5])
            guard header[2] == 0, header[3] == 0, (2...254).contains(length) else {
                throw .mismatch("not a Modbus TCP frame")
            }
            let body = try receive(fd, count: length - 1, before: deadline)
            tap?(.received, header + body)
            // The answer to an earlier request, late or sent twice: skip it and wait for this one's.
            guard UInt16(header[0]) << 8 | UInt16(header[1]) == id else { continue }
            guard header[6] == unit else { throw .mismatch("unit \(header[6]) answered, not unit \(unit)") }
            if body[0] == pdu[0] | 0x80, body.count == 2 { throw .exception(body[1]) }
            let data = Array(body.dropFirst())
            guard body[0] == pdu[0], fits(data) else {
                throw .mismatch("function \(body[0]) with \(data.count) byte(s) for function \(pdu[0])")
            }
            return data
        }
    }

    private func send(_ fd: Int32, _ frame: [UInt8]) throws(Failure) {
        var rest = frame[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { try wait(fd, for: POLLOUT, before: nil); continue }
                // Bytes the kernel already took may have reached the device; none taken means none left.
                throw .broken("send failed: \(String(cString: strerror(errno)))", sent: rest.count < frame.count)
            }
            rest = rest.dropFirst(n)
        }
    }

    /// The next `count` bytes of the stream: from the inbox, then from the socket, waiting only
    /// when nothing has arrived.
    private func receive(_ fd: Int32, count: Int, before deadline: UInt64) throws(Failure) -> [UInt8] {
        while inbox.count < count {
            if inbox.isEmpty { try wait(fd, for: POLLIN, before: deadline) }
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { inbox += scratch[..<n] }
            else if n == 0 { throw .broken("the device closed the connection", sent: true) }
            else if errno == EAGAIN || errno == EINTR { try wait(fd, for: POLLIN, before: deadline) }
            else { throw .broken("receive failed: \(String(cString: strerror(errno)))", sent: true) }
        }
        defer { inbox.removeFirst(count) }
        return Array(inbox.prefix(count))
    }

    /// Waits until the socket is ready; no deadline means the response timeout from now.
    private func wait(_ fd: Int32, for event: Int32, before deadline: UInt64?) throws(Failure) {
        let deadline = deadline ?? DispatchTime.now().uptimeNanoseconds + UInt64(endpoint.responseTimeout * 1e9)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { throw .timeout }
            var entry = pollfd(fd: fd, events: Int16(event), revents: 0)
            let ready = poll(&entry, 1, Int32((deadline - now) / 1_000_000) + 1)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw .broken("poll failed: \(String(cString: strerror(errno)))", sent: true) }
        }
    }

    private func connectedSocket() throws(Failure) -> Int32 {
        if socket >= 0 { return socket }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &found) == 0, let address = found else {
            throw .broken("cannot connect: unknown host \(endpoint.host)", sent: false)
        }
        defer { freeaddrinfo(found) }
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .broken("cannot connect: \(String(cString: strerror(errno)))", sent: false) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
            var failure = errno
            if failure == EINPROGRESS {
                do throws(Failure) { try wait(fd, for: POLLOUT, before: nil) } catch {
                    Glibc.close(fd)
                    throw .broken("cannot connect: no answer within \(endpoint.responseTimeout) s", sent: false)
                }
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            }
            if failure != 0 && failure != EINPROGRESS {
                Glibc.close(fd)
                throw .broken("cannot connect: \(String(cString: strerror(failure)))", sent: false)
            }
        }
        socket = fd
        try greet(fd)
        return fd
    }

    /// Sends the session's greeting (the driver file's `init:`) on a fresh connection. A step that
    /// fails closes the connection again and fails the request that opened it, naming the step.
    private func greet(_ fd: Int32) throws(Failure) {
        let session = self.session.withLock { $0 }
        pacer.interval = session.minInterval
        for write in session.greeting {
            let pdu: [UInt8]
            switch write.target {
            case .registers(let address, let values):
                pdu = [0x10] + address.bytes + UInt16(values.count).bytes + [UInt8(2 * values.count)] + values.flatMap(\.bytes)
            case .coil(let address, let bit):
                pdu = [0x05] + address.bytes + (bit ? [0xFF, 0x00] : [0x00, 0x00])
            }
            do throws(Failure) { _ = try exchange(fd, pdu) { $0 == Array(pdu[1...4]) } } catch {
                disconnect()
                // A device that refuses its init is not connected, as if the connect had been refused.
                let code: LabError.Code = if case .timeout = error { .timeout } else { .instrumentLost }
                let reason = if case .exception(let c) = error { ModbusException.message(c) } else { error.message }
                throw .refused(LabError(code, "\(endpoint): \(write.label) failed: \(reason); the connection was closed"))
            }
        }
    }
}

extension UInt16 {
    /// Big-endian, as Modbus sends every 16-bit field.
    fileprivate var bytes: [UInt8] { [UInt8(self >> 8), UInt8(self & 0xFF)] }
}
