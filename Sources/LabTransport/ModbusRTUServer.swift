import CModbus
import Dispatch
import Foundation
import Glibc
public import LabCore
import Synchronization

/// A Modbus RTU device on a pseudo-terminal: a driver opens `path` as it would /dev/ttyUSB0. Frames
/// are cut here (by function code and byte count, with the CRC checked, as a device on a bus must:
/// a frame with a bad CRC is ignored, and so is one for another unit); the replies are libmodbus's
/// own (`modbus_reply` on an RTU context), so clients are checked against an independent
/// implementation. The handler sees each request before the reply goes out, as on `ModbusServer`.
public final class ModbusRTUServer: Sendable {
    public let path: String
    public let unit: Int
    private let terminal: PseudoTerminal
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let contextAddress: Int
    private let mappingAddress: Int

    public init(unit: Int = 1, sizes: ModbusServer.TableSizes, handler: @escaping ModbusServer.Handler) throws(LabError) {
        terminal = try PseudoTerminal.open()
        guard let ctx = modbus_new_rtu("/dev/null", 9600, CChar(UInt8(ascii: "N")), 8, 1) else {
            terminal.close()
            throw LabError(.transport, "cannot create a Modbus RTU device")
        }
        guard let mapping = modbus_mapping_new(Int32(sizes.coils), Int32(sizes.discreteInputs),
                                               Int32(sizes.holding), Int32(sizes.input)) else {
            modbus_free(ctx)
            terminal.close()
            throw LabError(.transport, "cannot allocate Modbus tables")
        }
        modbus_set_slave(ctx, Int32(unit))
        modbus_set_socket(ctx, terminal.primary)
        self.unit = unit
        path = terminal.path
        contextAddress = Int(bitPattern: UnsafeRawPointer(ctx))
        mappingAddress = Int(bitPattern: mapping)
        let thread = Thread { [self] in serve(handler) }
        thread.name = "serendip.modbus-rtu-server"
        thread.start()
    }

    /// Stops serving, closes the pseudo-terminal and frees the libmodbus objects. Idempotent.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    deinit { stop() }

    private func serve(_ handler: ModbusServer.Handler) {
        let ctx = OpaquePointer(bitPattern: contextAddress)!
        let mapping = UnsafeMutablePointer<modbus_mapping_t>(bitPattern: mappingAddress)!
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while !stopping.load(ordering: .acquiring) {
            var entry = pollfd(fd: terminal.primary, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20) > 0 else {
                // Silence ends a frame: what is left of a broken one is dropped.
                pending = []
                continue
            }
            let n = chunk.withUnsafeMutableBytes { read(terminal.primary, $0.baseAddress, $0.count) }
            guard n > 0 else { usleep(10_000); continue }
            pending += chunk[..<n]
            while let length = Self.requestLength(pending) {
                guard pending.count >= length else { break }
                let frame = Array(pending[..<length])
                pending.removeFirst(length)
                guard ModbusCRC.isIntact(frame) else { pending = []; break }
                guard Int(frame[0]) == unit || frame[0] == 0 else { continue }
                guard let request = ModbusServer.request(in: frame, headerLength: 1) else { continue }
                handler(ModbusRegisterBank(mapping), request)
                _ = frame.withUnsafeBufferPointer { modbus_reply(ctx, $0.baseAddress, Int32(frame.count), mapping) }
            }
            if pending.count >= 2, Self.requestLength(pending) == nil { pending = [] }
        }
        modbus_set_socket(ctx, -1)
        modbus_mapping_free(mapping)
        modbus_free(ctx)
        terminal.close()
        finished.signal()
    }

    /// The length of the request at the start of `bytes` (unit, function, data, CRC), once its header
    /// says; nil for a function this device does not know or while too little has arrived.
    static func requestLength(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        switch bytes[1] {
        case 0x01...0x06: return 8
        case 0x0F, 0x10: return bytes.count >= 7 ? 9 + Int(bytes[6]) : 7
        default: return nil
        }
    }
}
