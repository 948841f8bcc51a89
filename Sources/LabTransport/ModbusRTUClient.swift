import CModbus
import Dispatch
import Glibc
public import LabCore
import Synchronization

/// One RS-485 (or RS-232) line and the settings it is driven at.
public struct ModbusRTULine: Sendable, Hashable, CustomStringConvertible {
    public typealias Parity = SerialLineSettings.Parity
    /// A path, or a USB adapter looked up by its serial number each time the port is opened.
    public var port: SerialPort
    public var baud: Int
    public var parity: Parity
    public var dataBits: Int
    public var stopBits: Int

    public init(path: String, baud: Int = 9600, parity: Parity = .none, dataBits: Int = 8, stopBits: Int = 1) {
        self.init(port: .path(path), baud: baud, parity: parity, dataBits: dataBits, stopBits: stopBits)
    }

    public init(port: SerialPort, baud: Int = 9600, parity: Parity = .none, dataBits: Int = 8, stopBits: Int = 1) {
        self.port = port; self.baud = baud; self.parity = parity; self.dataBits = dataBits; self.stopBits = stopBits
    }

    public var path: String { port.description }

    public var description: String { "modbus-rtu://\(port)?baud=\(baud)&parity=\(parity.rawValue)" }
}

/// The owner of one physical bus. Every unit on the line goes through this actor, which runs on its
/// own serial queue: RTU has no transaction id, so only one request may be on the line at a time,
/// and each blocks (in libmodbus) for up to its timeout. `shared(_:)` gives every instrument on one
/// port the same owner.
///
/// Framing, CRC and the check that a reply fits its request (unit, function, length) are
/// libmodbus's (`modbus_new_rtu`). What it cannot know is whether a reply belongs to an earlier
/// request: a late reply looks exactly like the next one's. So after any timeout or garbled reply
/// the line is left to fall silent (a whole response timeout without a byte) before the next request
/// goes out, and input that arrived meanwhile is discarded before each request.
public actor ModbusRTUBus {
    public nonisolated let line: ModbusRTULine
    private let executor: SerialQueueExecutor
    /// Touched only on the actor's queue, and by deinit when nothing else can reach it.
    private nonisolated(unsafe) var context: OpaquePointer?
    /// Set after a timeout or a garbled reply: an answer may still be on its way.
    private var unsettled = false
    /// Each unit's session (request spacing, greeting), and the units greeted since the port opened.
    private let sessions = ModbusSessions()
    private var greeted: Set<Int> = []
    private var pacers: [Int: RequestPacer] = [:]

    /// Set by the instrument of `unit`, before its first request.
    public nonisolated func prepare(unit: Int, _ session: ModbusSession) { sessions.set(session, for: unit) }

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private static let buses = Mutex<[SerialPort: WeakBus]>([:])
    private struct WeakBus { weak var bus: ModbusRTUBus? }

    /// The one owner of `line.port` in this process; a second owner asked for at other settings is refused.
    public static func shared(_ line: ModbusRTULine, ports: @escaping SerialPortLister = SerialPorts.list) throws(LabError) -> ModbusRTUBus {
        try buses.withLock { (buses: inout [SerialPort: WeakBus]) throws(LabError) -> ModbusRTUBus in
            if let bus = buses[line.port]?.bus {
                guard bus.line == line else {
                    throw LabError(.invalidFile, "\(line.path) is one bus: it cannot run at \(line) and at \(bus.line) at once")
                }
                return bus
            }
            let bus = ModbusRTUBus(line, ports: ports)
            buses[line.port] = WeakBus(bus: bus)
            return bus
        }
    }

    private let ports: SerialPortLister

    public init(_ line: ModbusRTULine, ports: @escaping SerialPortLister = SerialPorts.list) {
        self.line = line
        self.ports = ports
        executor = SerialQueueExecutor(label: "serendip.modbus-rtu.\(line.path)")
    }

    deinit {
        if let context {
            modbus_close(context)
            modbus_free(context)
        }
    }

    /// How long one request waits: for the first byte of its reply, and between two bytes of it.
    public struct Timing: Sendable, Hashable {
        public var response: Double
        public var byte: Double
        public init(response: Double = 1, byte: Double = 0.5) { self.response = response; self.byte = byte }
    }

    /// Opens the port if it is not open.
    public func connect() throws(LabError) {
        do throws(Failure) { _ = try open() } catch {
            if case .refused(let refusal) = error { throw refusal }
            throw LabError(.instrumentLost, "\(line): \(error.message)")
        }
    }

    /// Opens the port if it is not open, and greets `unit` if it has not been greeted since.
    public func connect(unit: Int, timing: Timing) throws(LabError) {
        do throws(Failure) { try greet(unit, timing, open()) } catch {
            if case .refused(let refusal) = error { throw refusal }
            throw LabError(.instrumentLost, "\(line): \(error.message)")
        }
    }

    public func disconnect() {
        if let context {
            modbus_close(context)
            modbus_free(context)
        }
        context = nil
        greeted = []
    }

    public func readRegisters(unit: Int, _ table: ModbusTable, address: UInt16, count: Int, timing: Timing, retries: Int) throws(LabError) -> [UInt16] {
        precondition(table == .holding || table == .input)
        var registers = [UInt16](repeating: 0, count: count)
        try perform(unit, "read \(count) register(s) at \(address)", timing, retries: retries) { ctx in
            registers.withUnsafeMutableBufferPointer {
                table == .holding ? modbus_read_registers(ctx, Int32(address), Int32(count), $0.baseAddress)
                    : modbus_read_input_registers(ctx, Int32(address), Int32(count), $0.baseAddress)
            }
        }
        return registers
    }

    public func readBits(unit: Int, _ table: ModbusTable, address: UInt16, count: Int, timing: Timing, retries: Int) throws(LabError) -> [Bool] {
        precondition(table == .coil || table == .discreteInput)
        var bits = [UInt8](repeating: 0, count: count)
        try perform(unit, "read \(count) bit(s) at \(address)", timing, retries: retries) { ctx in
            bits.withUnsafeMutableBufferPointer {
                table == .coil ? modbus_read_bits(ctx, Int32(address), Int32(count), $0.baseAddress)
                    : modbus_read_input_bits(ctx, Int32(address), Int32(count), $0.baseAddress)
            }
        }
        return bits.map { $0 != 0 }
    }

    public func writeRegisters(unit: Int, address: UInt16, values: [UInt16], timing: Timing) throws(LabError) {
        try perform(unit, "write \(values.count) register(s) at \(address)", timing, retries: nil) { ctx in
            values.withUnsafeBufferPointer { modbus_write_registers(ctx, Int32(address), Int32(values.count), $0.baseAddress) }
        }
    }

    public func writeBit(unit: Int, address: UInt16, _ value: Bool, timing: Timing) throws(LabError) {
        try perform(unit, "write coil \(address)", timing, retries: nil) { ctx in
            modbus_write_bit(ctx, Int32(address), value ? 1 : 0)
        }
    }

    private enum Failure: Error {
        case broken(String), timeout, garbled(String), exception(UInt8)
        /// The port could not be opened: nothing was sent.
        case unopened(String)
        /// A step of the unit's greeting failed, or the port cannot be chosen (two USB adapters
        /// match): reported as it is, never retried.
        case refused(LabError)

        var message: String {
            switch self {
            case .broken(let m), .garbled(let m), .unopened(let m): m
            case .timeout: "no reply"
            case .exception(let code): ModbusException.message(code)
            case .refused(let error): error.message
            }
        }
    }

    /// Runs one libmodbus call for `unit`. A read is sent again, as often as `retries` allow, after
    /// no reply, a garbled reply or a broken line; a write (`retries: nil`) never is, because the
    /// device may already have applied it.
    private func perform(_ unit: Int, _ what: @autoclosure () -> String, _ timing: Timing, retries: Int?,
                         _ call: (OpaquePointer) -> Int32) throws(LabError) {
        // Named only in an error: most requests never need the text.
        var prefix: String { "\(line)&unit=\(unit): \(what())" }
        var repeats = 0
        while true {
            do throws(Failure) {
                return try exchange(unit, timing, call)
            } catch {
                let notRepeated = "; the device may or may not have applied it (not repeated)"
                let code: LabError.Code, message: String
                switch error {
                case .refused(let refusal):
                    throw refusal
                case .exception:
                    // The device answered: the line is fine, the request is not.
                    throw LabError(.protocolViolation, "\(prefix): \(error.message)")
                case .timeout:
                    code = .timeout
                    message = "no reply within \(timing.response) s (check the unit id, baud rate, parity and wiring)"
                case .garbled(let detail):
                    code = .transport
                    message = "the reply was garbled (\(detail)); the line was left to fall silent"
                case .broken(let detail):
                    code = .instrumentLost
                    message = detail
                case .unopened(let detail):
                    // Nothing left: a write may say so, and a read may be tried again.
                    guard retries.map({ repeats < $0 }) ?? false else { throw LabError(.instrumentLost, "\(prefix): \(detail); nothing was sent") }
                    repeats += 1
                    continue
                }
                guard let retries else { throw LabError(code, "\(prefix): \(message)\(notRepeated)") }
                guard repeats < retries else { throw LabError(code, "\(prefix): \(message)") }
                repeats += 1
            }
        }
    }

    private func exchange(_ unit: Int, _ timing: Timing, _ call: (OpaquePointer) -> Int32) throws(Failure) -> Void {
        let ctx = try open()
        try greet(unit, timing, ctx)
        try request(unit, timing, ctx, call)
    }

    /// Sends `unit`'s greeting (its driver file's `init:`) once per opening of the port, before
    /// anything else goes to that unit. A failing step fails the request that needed it, naming the step.
    private func greet(_ unit: Int, _ timing: Timing, _ ctx: OpaquePointer) throws(Failure) {
        guard !greeted.contains(unit) else { return }
        let session = sessions[unit]
        pacers[unit, default: RequestPacer()].interval = session.minInterval
        for write in session.greeting {
            do throws(Failure) {
                try request(unit, timing, ctx) { ctx in
                    switch write.target {
                    case .registers(let address, let values):
                        values.withUnsafeBufferPointer { modbus_write_registers(ctx, Int32(address), Int32(values.count), $0.baseAddress) }
                    case .coil(let address, let bit):
                        modbus_write_bit(ctx, Int32(address), bit ? 1 : 0)
                    }
                }
            } catch {
                // A unit that refuses its init is not connected, as if the port could not be opened.
                let code: LabError.Code = if case .timeout = error { .timeout } else { .instrumentLost }
                throw .refused(LabError(code, "\(line)&unit=\(unit): \(write.label) failed: \(error.message)"))
            }
        }
        greeted.insert(unit)
    }

    private func request(_ unit: Int, _ timing: Timing, _ ctx: OpaquePointer, _ call: (OpaquePointer) -> Int32) throws(Failure) {
        if unsettled {
            waitForSilence(modbus_get_socket(ctx), silence: timing.response, atMost: 4 * timing.response + 1)
            unsettled = false
        }
        modbus_set_slave(ctx, Int32(unit))
        setTimeout(timing.response) { modbus_set_response_timeout(ctx, $0, $1) }
        setTimeout(timing.byte) { modbus_set_byte_timeout(ctx, $0, $1) }
        pacers[unit, default: RequestPacer()].waitForTurn()
        // Whatever arrived since the last exchange (or during the wait) is no answer to this request.
        modbus_flush(ctx)
        guard call(ctx) < 0 else { return }
        let failure = errno
        let offset = failure - MODBUS_ENOBASE
        switch offset {
        case 1...11:
            throw .exception(UInt8(offset))
        case 12...17:
            unsettled = true
            let detail = [12: "CRC error", 13: "invalid data", 14: "invalid exception code", 15: "unknown exception code",
                          16: "too many data", 17: "reply from another unit"][offset]!
            throw .garbled(detail)
        default:
            if failure == ETIMEDOUT {
                unsettled = true
                throw .timeout
            }
            // The adapter was unplugged, the line hung up: open the port afresh next time.
            disconnect()
            throw .broken("the serial line failed: \(String(cString: strerror(failure)))")
        }
    }

    private func setTimeout(_ seconds: Double, _ set: (UInt32, UInt32) -> Int32) {
        let whole = seconds.rounded(.down)
        _ = set(UInt32(whole), UInt32(((seconds - whole) * 1e6).rounded()))
    }

    /// Reads and discards until nothing has arrived for `silence` seconds (or `atMost` passed).
    private func waitForSilence(_ fd: Int32, silence: Double, atMost: Double) {
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(atMost * 1e9)
        var buffer = [UInt8](repeating: 0, count: 256)
        while DispatchTime.now().uptimeNanoseconds < end {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(silence * 1000) + 1) > 0 else { return }
            if entry.revents & Int16(POLLHUP | POLLERR) != 0 { return }
            if buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) <= 0 { return }
        }
    }

    /// Opens the port; a USB adapter is looked up again first, since a replug renames its device.
    private func open() throws(Failure) -> OpaquePointer {
        if let context { return context }
        let path: String
        do throws(LabError) { path = try line.port.devicePath(ports) } catch {
            throw error.code == .instrumentLost ? .unopened(error.message) : .refused(LabError(.invalidFile, "\(line): \(error.message)"))
        }
        let parity = CChar(UInt8(ascii: line.parity.rawValue.unicodeScalars.first!))
        guard let ctx = modbus_new_rtu(path, Int32(line.baud), parity, Int32(line.dataBits), Int32(line.stopBits)) else {
            throw .unopened("cannot drive \(path) at these settings: \(String(cString: strerror(errno)))")
        }
        guard modbus_connect(ctx) == 0 else {
            let reason = String(cString: strerror(errno))
            modbus_free(ctx)
            throw .unopened("cannot open \(path): \(reason)")
        }
        // libmodbus waits with select(), which cannot watch a descriptor above 1023 (glibc aborts):
        // move the port below that, as a process with many devices open needs.
        let fd = modbus_get_socket(ctx)
        if fd >= FD_SETSIZE {
            let low = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            guard low >= 0, low < FD_SETSIZE else {
                if low >= 0 { Glibc.close(low) }
                modbus_close(ctx)
                modbus_free(ctx)
                throw .unopened("cannot open \(path): no descriptor below \(FD_SETSIZE) is free")
            }
            Glibc.close(fd)
            modbus_set_socket(ctx, low)
        }
        do throws(LabError) { try PortClaim.claim(modbus_get_socket(ctx), path) } catch {
            modbus_close(ctx)
            modbus_free(ctx)
            throw .refused(error)
        }
        context = ctx
        greeted = []
        return ctx
    }
}

/// One unit on an RTU bus, with the timing its driver file gives.
public struct ModbusRTUClient: ModbusClient {
    public let bus: ModbusRTUBus
    public let unit: Int
    public let timing: ModbusRTUBus.Timing

    public init(bus: ModbusRTUBus, unit: Int, timing: ModbusRTUBus.Timing = .init()) {
        self.bus = bus; self.unit = unit; self.timing = timing
    }

    public var address: String { "\(bus.line)&unit=\(unit)" }

    public func readRegisters(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [UInt16] {
        try await bus.readRegisters(unit: unit, table, address: address, count: count, timing: timing, retries: retries)
    }

    public func writeRegisters(address: UInt16, values: [UInt16]) async throws {
        try await bus.writeRegisters(unit: unit, address: address, values: values, timing: timing)
    }

    public func readBits(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [Bool] {
        try await bus.readBits(unit: unit, table, address: address, count: count, timing: timing, retries: retries)
    }

    public func writeBit(address: UInt16, _ value: Bool) async throws {
        try await bus.writeBit(unit: unit, address: address, value, timing: timing)
    }

    public func connect() async throws { try await bus.connect(unit: unit, timing: timing) }

    public func prepare(_ session: ModbusSession) { bus.prepare(unit: unit, session) }
}
