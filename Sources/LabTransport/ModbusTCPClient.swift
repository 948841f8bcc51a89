import Dispatch
import CPoll
import Glibc
public import LabCore
import Synchronization

/// One Modbus TCP connection.
///
/// The MBAP framing is done here rather than by libmodbus's client, because a reply must be matched
/// to its request: libmodbus 3.1.6 takes a reply from another unit id as the answer, reports a reply
/// to an earlier request (late, or sent twice) as the device's "Invalid data" without skipping it,
/// and its flush drops only bytes that have already arrived. Here a reply to another transaction is
/// skipped; a reply that does not fit the request (wrong unit, function or shape) is refused and the
/// connection dropped; after a timeout the connection is dropped too, so a late answer lands on a
/// closed socket. No value is ever returned for a request other than its own. Links are re-opened
/// here with a bounded backoff (never libmodbus's link recovery, which can retry forever).
///
/// Requests run through a `RequestLane`: on the caller's thread when the connection is open, idle
/// and unpaced and its replies come within the budget (a loopback or LAN device), on the
/// connection's own serial queue otherwise (connecting and the greeting, backoff, `min_interval:`
/// pacing, a slower reply).
public final class ModbusTCPClient: Sendable {
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

        /// An IPv6 host in brackets, as in the address form it is read from.
        public var description: String { "modbus-tcp://\(host.contains(":") ? "[\(host)]" : host):\(port)/\(unit)" }
    }

    public typealias Table = ModbusTable

    public let endpoint: Endpoint
    private let lane: RequestLane<ModbusTCPLink>
    private let sessions = ModbusSessions()

    public init(_ endpoint: Endpoint, tap: TrafficTap? = nil) {
        self.endpoint = endpoint
        lane = RequestLane(ModbusTCPLink(endpoint: endpoint, tap: tap, sessions: sessions),
                           label: "serendip.modbus.\(endpoint.host):\(endpoint.port)")
    }

    /// Set by the instrument that owns the connection, before its first request.
    public func prepare(_ session: ModbusSession) { sessions.set(session, for: endpoint.unit) }

    /// Reads registers; `retries` more attempts (on a fresh connection) when the link breaks or the
    /// device does not answer in time. Only for reads the driver file says are safe to repeat.
    public func readRegisters(_ table: Table, address: UInt16, count: Int, retries: Int = 0) async throws(LabError) -> [UInt16] {
        precondition(table == .holding || table == .input)
        return ModbusRequest.registers(try await lane.run(ModbusRequest(read: table, address: address, count: count, retries: retries)))
    }

    public func writeRegisters(address: UInt16, values: [UInt16]) async throws(LabError) {
        _ = try await lane.run(ModbusRequest(writing: values, at: address))
    }

    public func readBits(_ table: Table, address: UInt16, count: Int, retries: Int = 0) async throws(LabError) -> [Bool] {
        precondition(table == .coil || table == .discreteInput)
        return ModbusRequest.bits(try await lane.run(ModbusRequest(read: table, address: address, count: count, retries: retries)), count: count)
    }

    public func writeBit(address: UInt16, _ value: Bool) async throws(LabError) {
        _ = try await lane.run(ModbusRequest(writing: value, at: address))
    }

    /// Opens the connection if it is not open (or was closed by the device): a probe that sends nothing.
    public func connect() async throws(LabError) {
        try await lane.onLane { link throws(LabError) in try link.connect() }
    }

    public func disconnect() async {
        _ = try? await lane.onLane { link throws(LabError) in link.disconnect() }
    }
}

/// The connection's state and its synchronous protocol: whoever holds the client's lock runs it.
struct ModbusTCPLink: LaneLink {
    let endpoint: ModbusTCPClient.Endpoint
    /// Told every frame sent and received, when the instrument's traffic is recorded.
    let tap: TrafficTap?
    let sessions: ModbusSessions
    private var socket: Int32 = -1
    /// Bytes received and not yet taken as a frame: a reply is read whole in one recv where it can
    /// be, and what follows it (a duplicate, say) waits here as it would in the socket.
    private var inbox: [UInt8] = []
    /// Where recv writes, kept between requests rather than allocated for each.
    private var scratch = [UInt8](repeating: 0, count: 512)
    private var transactionID: UInt16 = 0
    private var pacer = RequestPacer()
    /// How long the last reply took: a device slower than the budget is served on the lane alone.
    private var lastReplyTime: UInt64 = 0
    var parked: Parked<Self>?

    init(endpoint: ModbusTCPClient.Endpoint, tap: TrafficTap?, sessions: ModbusSessions) {
        self.endpoint = endpoint
        self.tap = tap
        self.sessions = sessions
    }

    static func attempt() -> Attempt { Attempt() }

    /// One request's progress, carried from the caller's thread to the lane when it is parked.
    struct Attempt: Sendable {
        var connectFailures = 0, repeats = 0
        var checkedPeer = false
        /// Sent, and not yet answered: its transaction id, when it left, and when it times out.
        var awaiting: (id: UInt16, sent: UInt64, deadline: UInt64)?
    }

    func servesCallers(_ request: ModbusRequest) -> Bool {
        servesCallersNow && lastReplyTime < RequestLane<Self>.budget
    }

    /// Why one exchange did not return its answer. `sent` says whether any byte of the request may
    /// have left: only a request that never left can be sent again without asking the driver file.
    private enum Failure: Error {
        case broken(String, sent: Bool), timeout, mismatch(String), exception(UInt8)
        /// A step of the connection's greeting failed: reported as it is, never retried.
        case refused(LabError)
        /// The caller's budget ran out before the reply came: the lane carries on.
        case overBudget

        var message: String {
            switch self {
            case .broken(let m, _), .mismatch(let m): m
            case .refused(let error): error.message
            case .timeout: "no reply"
            case .exception(let code): "exception \(code)"
            case .overBudget: "over budget"
            }
        }
    }

    /// Runs one request and returns the reply's data after the function code, or nil when `budget`
    /// nanoseconds pass first, or it would have to connect, back off or be paced (`attempt` says
    /// where it stands). A request that never left (the connect failed) is tried again, a bounded
    /// number of times with a backoff doubling from 20 ms. One whose link broke, or that got no
    /// reply, after it was sent is repeated only if it is a read with `retries` left; a write is
    /// never repeated, because the device may already have applied it.
    mutating func perform(_ request: ModbusRequest, _ attempt: inout Attempt, budget: UInt64?) throws(LabError) -> [UInt8]? {
        let budgetEnd = budget.map { now() + $0 }
        if !attempt.checkedPeer {
            attempt.checkedPeer = true
            try refuseIfClosedByPeer(request.what)
        }
        while true {
            do throws(Failure) {
                if attempt.awaiting == nil {
                    guard budget == nil || servesCallersNow else { return nil }
                    if attempt.connectFailures > 0 { usleep(UInt32(20_000 << (attempt.connectFailures - 1))) }
                    attempt.awaiting = try send(connectedSocket(), request.pdu)
                }
                let data = try receiveReply(to: request, attempt.awaiting!, budgetEnd: budgetEnd)
                lastReplyTime = now() - attempt.awaiting!.sent
                return data
            } catch .overBudget {
                // Still awaited: the lane waits on for this reply, and must not send the request again.
                return nil
            } catch {
                attempt.awaiting = nil
                let what = request.what
                switch error {
                case .overBudget:
                    preconditionFailure("handled above")
                case .broken(let message, sent: false):
                    disconnect()
                    attempt.connectFailures += 1
                    guard attempt.connectFailures < endpoint.connectAttempts else {
                        throw LabError(.instrumentLost, "\(endpoint): \(what): \(message)")
                    }
                case .broken(let message, sent: true):
                    disconnect()
                    guard let retries = request.retries else {
                        throw LabError(.instrumentLost, "\(endpoint): \(what): \(message) after the request was sent; the device may or may not have applied it (not repeated)")
                    }
                    guard attempt.repeats < retries else { throw LabError(.instrumentLost, "\(endpoint): \(what): \(message)") }
                    attempt.repeats += 1
                case .timeout:
                    // The device may still answer: drop the connection so that answer is never read.
                    disconnect()
                    guard let retries = request.retries else {
                        throw LabError(.timeout, "\(endpoint): \(what): no reply within \(endpoint.responseTimeout) s; the device may or may not have applied it (not repeated)")
                    }
                    guard attempt.repeats < retries else {
                        throw LabError(.timeout, "\(endpoint): \(what): no reply within \(endpoint.responseTimeout) s")
                    }
                    attempt.repeats += 1
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

    /// A request about to be sent from a caller's thread needs neither a connect nor a wait for its turn.
    private var servesCallersNow: Bool { socket >= 0 && pacer.interval == 0 }

    /// Opens the connection if it is not open (or was closed by the device): a probe that sends nothing.
    mutating func connect() throws(LabError) {
        try refuseIfClosedByPeer("connect")
        do throws(Failure) { _ = try connectedSocket() } catch {
            if case .refused(let refusal) = error { throw refusal }
            throw LabError(.instrumentLost, "\(endpoint): \(error.message)")
        }
    }

    mutating func disconnect() {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        inbox = []
    }

    /// A connection the device closed while idle (it restarted, or was unplugged and is back) is
    /// dropped, and reported as a loss before anything is sent: a device that restarted may have lost
    /// its setpoints, and a run that went on unaware would be wrong about the lab. The next request
    /// goes out on a fresh connection.
    private mutating func refuseIfClosedByPeer(_ what: @autoclosure () -> String) throws(LabError) {
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

    /// Frames and sends a request; returns what its reply is awaited by.
    private mutating func send(_ fd: Int32, _ pdu: [UInt8]) throws(Failure) -> (id: UInt16, sent: UInt64, deadline: UInt64) {
        transactionID &+= 1
        let frame = transactionID.bigEndianBytes + [0, 0] + UInt16(pdu.count + 1).bigEndianBytes + [UInt8(endpoint.unit)] + pdu
        pacer.waitForTurn()
        var rest = frame[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { try wait(fd, for: POLLOUT, before: now() + timeout); continue }
                // Bytes the kernel already took may have reached the device; none taken means none left.
                throw .broken("send failed: \(String(cString: strerror(errno)))", sent: rest.count < frame.count)
            }
            rest = rest.dropFirst(n)
        }
        tap?(.sent, frame)
        let sent = now()
        return (transactionID, sent, sent + timeout)
    }

    /// The reply to the request awaited, skipping answers to earlier ones. A frame is taken from the
    /// inbox only once it is whole, so a caller's budget can run out at any point and the lane go on.
    private mutating func receiveReply(to request: ModbusRequest, _ awaiting: (id: UInt16, sent: UInt64, deadline: UInt64),
                                       budgetEnd: UInt64?) throws(Failure) -> [UInt8] {
        let unit = UInt8(endpoint.unit)
        while true {
            try fill(7, before: awaiting.deadline, budgetEnd: budgetEnd)
            let length = Int(inbox[4]) << 8 | Int(inbox[5])
            guard inbox[2] == 0, inbox[3] == 0, (2...254).contains(length) else { throw .mismatch("not a Modbus TCP frame") }
            try fill(6 + length, before: awaiting.deadline, budgetEnd: budgetEnd)
            let frame = Array(inbox[..<(6 + length)])
            inbox.removeFirst(6 + length)
            tap?(.received, frame)
            // The answer to an earlier request, late or sent twice: skip it and wait for this one's.
            guard UInt16(frame[0]) << 8 | UInt16(frame[1]) == awaiting.id else { continue }
            guard frame[6] == unit else { throw .mismatch("unit \(frame[6]) answered, not unit \(unit)") }
            switch request.judge(frame[7...]) {
            case .data(let data): return data
            case .exception(let code): throw .exception(code)
            case .mismatch(let detail): throw .mismatch(detail)
            }
        }
    }

    /// Receives until the inbox holds `count` bytes, waiting only when nothing has arrived.
    private mutating func fill(_ count: Int, before deadline: UInt64, budgetEnd: UInt64?) throws(Failure) {
        while inbox.count < count {
            if inbox.isEmpty { try wait(socket, for: POLLIN, before: deadline, budgetEnd: budgetEnd) }
            let n = scratch.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { inbox += scratch[..<n] }
            else if n == 0 { throw .broken("the device closed the connection", sent: true) }
            else if errno == EAGAIN || errno == EINTR { try wait(socket, for: POLLIN, before: deadline, budgetEnd: budgetEnd) }
            else { throw .broken("receive failed: \(String(cString: strerror(errno)))", sent: true) }
        }
    }

    /// Waits until the socket is ready, the deadline passes (a timeout) or the budget does.
    private func wait(_ fd: Int32, for event: Int32, before deadline: UInt64, budgetEnd: UInt64? = nil) throws(Failure) {
        while true {
            let now = now()
            guard now < deadline else { throw .timeout }
            if let budgetEnd, now >= budgetEnd { throw .overBudget }
            let left = min(deadline, budgetEnd ?? .max) - now
            let ready = serendip_poll_ns(fd, Int16(event), Int64(left))
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw .broken("poll failed: \(String(cString: strerror(errno)))", sent: true) }
        }
    }

    private var timeout: UInt64 { UInt64(endpoint.responseTimeout * 1e9) }
    private func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private mutating func connectedSocket() throws(Failure) -> Int32 {
        if socket >= 0 { return socket }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &found) == 0, let address = found else {
            throw .broken("cannot connect: unknown host \(endpoint.host)", sent: false)
        }
        defer { freeaddrinfo(found) }
        let fd = Glibc.socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .broken("cannot connect: \(String(cString: strerror(errno)))", sent: false) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
            var failure = errno
            if failure == EINPROGRESS {
                do throws(Failure) { try wait(fd, for: POLLOUT, before: now() + timeout) } catch {
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
        lastReplyTime = 0
        try greet()
        return fd
    }

    /// Sends the session's greeting (the driver file's `init:`) on a fresh connection. A step that
    /// fails closes the connection again and fails the request that opened it, naming the step.
    private mutating func greet() throws(Failure) {
        let session = sessions[endpoint.unit]
        pacer.interval = session.minInterval
        for write in session.greeting {
            let request = ModbusRequest(write)
            do throws(Failure) {
                _ = try receiveReply(to: request, send(socket, request.pdu), budgetEnd: nil)
            } catch {
                disconnect()
                // A device that refuses its init is not connected, as if the connect had been refused.
                let code: LabError.Code = if case .timeout = error { .timeout } else { .instrumentLost }
                let reason = if case .exception(let c) = error { ModbusException.message(c) } else { error.message }
                throw .refused(LabError(code, "\(endpoint): \(write.label) failed: \(reason); the connection was closed"))
            }
        }
    }
}
