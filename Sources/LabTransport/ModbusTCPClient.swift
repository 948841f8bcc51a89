import CModbus
import Dispatch
import Glibc
public import LabCore

/// Owns one libmodbus context; freed exactly once when the owner goes away.
private final class ModbusContext {
    let pointer: OpaquePointer

    init(host: String, port: Int) throws(LabError) {
        guard let ctx = modbus_new_tcp(host, Int32(port)) else {
            throw LabError(.transport, "cannot create a Modbus context for \(host):\(port)")
        }
        pointer = ctx
    }

    deinit {
        modbus_close(pointer)
        modbus_free(pointer)
    }
}

/// One Modbus TCP connection. Its actor runs on its own serial queue because libmodbus calls block
/// for up to their timeout and a context is not thread-safe. It never uses libmodbus's own link
/// recovery (which can retry forever): it reconnects here with a bounded backoff, and after a
/// timeout it flushes before the next request so a late reply is never taken as the next answer.
public actor ModbusTCPClient {
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var unit: Int
        public var responseTimeout: Double

        public init(host: String, port: Int, unit: Int = 1, responseTimeout: Double = 1) {
            self.host = host; self.port = port; self.unit = unit; self.responseTimeout = responseTimeout
        }

        public var description: String { "modbus-tcp://\(host):\(port)/\(unit)" }
    }

    public enum Table: Sendable { case holding, input, coil, discreteInput }

    public nonisolated let endpoint: Endpoint
    private let executor: SerialQueueExecutor
    private var context: ModbusContext?
    private var needsFlush = false
    /// Reconnection attempts per request, with doubling backoff from 20 ms.
    private let reconnectAttempts = 3

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(_ endpoint: Endpoint) {
        self.endpoint = endpoint
        executor = SerialQueueExecutor(label: "serendip.modbus.\(endpoint.host):\(endpoint.port)")
    }

    public func readRegisters(_ table: Table, address: UInt16, count: Int) throws(LabError) -> [UInt16] {
        precondition(table == .holding || table == .input)
        var registers = [UInt16](repeating: 0, count: count)
        try perform("read \(count) register(s) at \(address)") { ctx in
            registers.withUnsafeMutableBufferPointer { buffer in
                table == .holding
                    ? modbus_read_registers(ctx, Int32(address), Int32(count), buffer.baseAddress)
                    : modbus_read_input_registers(ctx, Int32(address), Int32(count), buffer.baseAddress)
            }
        }
        return registers
    }

    public func writeRegisters(address: UInt16, values: [UInt16]) throws(LabError) {
        try perform("write \(values.count) register(s) at \(address)") { ctx in
            values.withUnsafeBufferPointer { modbus_write_registers(ctx, Int32(address), Int32(values.count), $0.baseAddress) }
        }
    }

    public func readBits(_ table: Table, address: UInt16, count: Int) throws(LabError) -> [Bool] {
        precondition(table == .coil || table == .discreteInput)
        var bits = [UInt8](repeating: 0, count: count)
        try perform("read \(count) bit(s) at \(address)") { ctx in
            bits.withUnsafeMutableBufferPointer { buffer in
                table == .coil
                    ? modbus_read_bits(ctx, Int32(address), Int32(count), buffer.baseAddress)
                    : modbus_read_input_bits(ctx, Int32(address), Int32(count), buffer.baseAddress)
            }
        }
        return bits.map { $0 != 0 }
    }

    public func writeBit(address: UInt16, _ value: Bool) throws(LabError) {
        try perform("write coil \(address)") { ctx in modbus_write_bit(ctx, Int32(address), value ? 1 : 0) }
    }

    public func disconnect() {
        context = nil
    }

    /// Runs one request, connecting first if needed; on a broken link reconnects a bounded number of times.
    private func perform(_ what: String, _ request: (OpaquePointer) -> Int32) throws(LabError) {
        var lastError = LabError(.transport, "\(endpoint): \(what) failed")
        for attempt in 0..<reconnectAttempts {
            if attempt > 0 { usleep(UInt32(20_000 << (attempt - 1))) }
            let ctx: OpaquePointer
            do { ctx = try connectedContext() } catch { lastError = error; continue }
            if needsFlush {
                modbus_flush(ctx)
                needsFlush = false
            }
            if request(ctx) != -1 { return }
            let code = serendip_modbus_errno()
            let message = String(cString: modbus_strerror(code))
            if code == serendip_modbus_timeout_errno() {
                // The device may still answer; drop that answer before the next request.
                needsFlush = true
                throw LabError(.timeout, "\(endpoint): \(what): no reply within \(endpoint.responseTimeout) s")
            }
            if code > Int32(MODBUS_ENOBASE) && code < Int32(MODBUS_ENOBASE) + 100 {
                // The device answered with a Modbus exception: the link is fine, the request is not.
                throw LabError(.protocolViolation, "\(endpoint): \(what): device answered '\(message)'")
            }
            lastError = LabError(.transport, "\(endpoint): \(what): \(message)")
            context = nil
        }
        throw LabError(.instrumentLost, lastError.message)
    }

    private func connectedContext() throws(LabError) -> OpaquePointer {
        if let context { return context.pointer }
        let fresh = try ModbusContext(host: endpoint.host, port: endpoint.port)
        let seconds = endpoint.responseTimeout.rounded(.down)
        modbus_set_response_timeout(fresh.pointer, UInt32(seconds), UInt32((endpoint.responseTimeout - seconds) * 1e6))
        modbus_set_slave(fresh.pointer, Int32(endpoint.unit))
        guard modbus_connect(fresh.pointer) == 0 else {
            let message = String(cString: modbus_strerror(serendip_modbus_errno()))
            throw LabError(.transport, "\(endpoint): cannot connect: \(message)")
        }
        context = fresh
        return fresh.pointer
    }
}
