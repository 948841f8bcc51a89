import LabCore
import Synchronization

public enum ModbusTable: Sendable { case holding, input, coil, discreteInput }

/// What an instrument needs of a Modbus link, over TCP or over a serial line (RTU). `retries` are
/// further attempts of a read whose link broke or got no reply; a write is never repeated.
public protocol ModbusClient: Sendable {
    /// Where the device is, as an address (`modbus-tcp://host:port/unit`, `modbus-rtu:///dev/ttyUSB0?unit=3`).
    var address: String { get }
    func readRegisters(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [UInt16]
    func writeRegisters(address: UInt16, values: [UInt16]) async throws
    func readBits(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [Bool]
    func writeBit(address: UInt16, _ value: Bool) async throws
    /// Opens the link if it is not open: a probe that sends nothing (but the session's greeting).
    func connect() async throws
    /// Sets the request spacing and the writes sent on every fresh connection, before the first request.
    func prepare(_ session: ModbusSession)
}

/// What a Modbus instrument asks of its link beyond single requests: the spacing of its requests
/// and the writes sent on every fresh connection (the driver file's `init:`), before anything else.
public struct ModbusSession: Sendable {
    public struct Write: Sendable {
        public enum Target: Sendable { case registers(UInt16, [UInt16]), coil(UInt16, Bool) }
        /// Names the step in an error: `init step 1 holding 300 = 1 (drivers/x.yaml:7:5)`.
        public var label: String
        public var target: Target
        public init(label: String, target: Target) { self.label = label; self.target = target }
    }
    public var minInterval: Double
    public var greeting: [Write]
    public init(minInterval: Double = 0, greeting: [Write] = []) { self.minInterval = minInterval; self.greeting = greeting }
}

extension ModbusTCPClient: ModbusClient {
    public var address: String { endpoint.description }
}

/// The CRC-16 every Modbus RTU frame ends with (polynomial 0xA001, initial 0xFFFF), low byte first on the wire.
public enum ModbusCRC {
    public static func crc16<C: Collection<UInt8>>(_ bytes: C) -> UInt16 {
        var crc: UInt16 = 0xFFFF
        for byte in bytes {
            crc ^= UInt16(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
        }
        return crc
    }

    /// The frame with its CRC appended.
    public static func framed(_ bytes: [UInt8]) -> [UInt8] {
        let crc = crc16(bytes)
        return bytes + [UInt8(crc & 0xFF), UInt8(crc >> 8)]
    }

    public static func isIntact(_ frame: some Collection<UInt8>) -> Bool {
        guard frame.count >= 4 else { return false }
        let body = frame.dropLast(2), tail = Array(frame.suffix(2))
        return crc16(body) == UInt16(tail[0]) | UInt16(tail[1]) << 8
    }
}

/// The sessions of the units behind one connection, set by their instruments and read whenever the
/// connection opens.
final class ModbusSessions: Sendable {
    private let sessions = Mutex<[Int: ModbusSession]>([:])

    subscript(unit: Int) -> ModbusSession {
        get { sessions.withLock { $0[unit] } ?? ModbusSession() }
    }

    func set(_ session: ModbusSession, for unit: Int) { sessions.withLock { $0[unit] = session } }
}
