import Foundation
public import LabCore
public import LabSpec
public import LabTransport
import Synchronization

/// What a simulator served on each read-only channel, in order, so that tests can compare the
/// stored data with what the "instrument" actually produced.
public final class ServedValues: Sendable {
    private let values = Mutex<[String: [Double]]>([:])

    public init() {}

    func record(_ channel: String, _ value: Double) {
        values.withLock { $0[channel, default: []].append(value) }
    }

    public subscript(channel: String) -> [Double] { values.withLock { $0[channel] ?? [] } }
}

/// A Modbus TCP device on 127.0.0.1 built from a driver file's register map.
public final class ModbusSimulator: Sendable {
    public let spec: DriverSpec
    public let served = ServedValues()
    /// Every value a client wrote, per channel, as the device received it.
    public let written = ServedValues()
    private let server: ModbusServer

    public var port: Int { server.port }

    public init(spec: DriverSpec, model: any DeviceModel) throws {
        self.spec = spec
        let channels = Array(spec.channels.values)
        let served = self.served, written = self.written
        server = try ModbusServer(sizes: Self.sizes(channels)) { bank, request in
            for channel in channels {
                switch channel.register {
                case .input(let address) where request.touchesInputRegisters && request.covers(address, count: channel.registerCount):
                    let value = (try? model.value(of: channel.name)) ?? .nan
                    let registers = ModbusInstrument.encode(value, channel)
                    served.record(channel.name, Self.decoded(registers, channel))
                    for (i, r) in registers.enumerated() { bank.setInput(address + UInt16(i), r) }
                case .discreteInput(let address) where request.touchesDiscreteInputs:
                    bank.setDiscrete(address, ((try? model.value(of: channel.name)) ?? 0) != 0)
                case .holding(let address) where !request.written.isEmpty && request.touchesHoldingRegisters
                    && request.covers(address, count: channel.registerCount):
                    // The new content: what the request writes, the rest as it is.
                    let registers = (0..<channel.registerCount).map { i in
                        request.writtenValue(at: address + UInt16(i)) ?? bank.holding(address + UInt16(i))
                    }
                    written.record(channel.name, Self.decoded(registers, channel))
                    model.didWrite(channel.name, Self.decoded(registers, channel))
                case .coil(let address) where request.touchesCoils:
                    if let bit = request.writtenValue(at: address) {
                        written.record(channel.name, Double(bit))
                        model.didWrite(channel.name, Double(bit))
                    }
                default:
                    break
                }
            }
        }
    }

    public func stop() { server.stop() }

    private static func decoded(_ registers: [UInt16], _ channel: ChannelSpec) -> Double {
        channel.registerCount == 2 ? Double(ModbusFloat.decode(registers, channel.wordOrder.modbus))
            : channel.type == .int16 ? Double(Int16(bitPattern: registers[0])) : Double(registers[0])
    }

    private static func sizes(_ channels: [ChannelSpec]) -> ModbusServer.TableSizes {
        var sizes = ModbusServer.TableSizes()
        for channel in channels {
            switch channel.register {
            case .holding(let a): sizes.holding = max(sizes.holding, Int(a) + channel.registerCount)
            case .input(let a): sizes.input = max(sizes.input, Int(a) + channel.registerCount)
            case .coil(let a): sizes.coils = max(sizes.coils, Int(a) + 1)
            case .discreteInput(let a): sizes.discreteInputs = max(sizes.discreteInputs, Int(a) + 1)
            case .command: break
            }
        }
        return sizes
    }
}

/// An ASCII command/response device on a pseudo-terminal, built from a driver file's command set.
public final class SerialSimulator: Sendable {
    public let spec: DriverSpec
    public let served = ServedValues()
    /// Every value a client wrote, per channel, as the device received it.
    public let written = ServedValues()
    private let server: LineServer

    public var path: String { server.path }

    public init(spec: DriverSpec, model: any DeviceModel) throws {
        self.spec = spec
        let served = self.served, written = self.written
        let commands = spec.channels.values.compactMap { channel -> (ChannelSpec, String?, ChannelSpec.WriteCommand?)? in
            guard case .command(let query, let write) = channel.register else { return nil }
            return (channel, query, write)
        }
        server = try LineServer(terminator: spec.serial.terminator) { line in
            for (channel, query, write) in commands {
                if line == query {
                    do {
                        let value = try model.value(of: channel.name)
                        served.record(channel.name, value)
                        return channel.type == .bool ? (value != 0 ? "1" : "0") : String(value)
                    } catch {
                        return "ERR \(error)"
                    }
                }
                if let value = write.flatMap({ Self.written(line, by: $0) }) {
                    written.record(channel.name, value)
                    model.didWrite(channel.name, value)
                    return "OK"
                }
            }
            return "ERR unknown command '\(line)'"
        }
    }

    public func stop() { server.stop() }

    /// The value a line sets through a write command, if it is that command.
    static func written(_ line: String, by command: ChannelSpec.WriteCommand) -> Double? {
        switch command {
        case .switched(let on, let off): line == on ? 1 : line == off ? 0 : nil
        case .template(let template):
            template.components(separatedBy: "{value}").first.flatMap { prefix in
                line.hasPrefix(prefix) ? Double(line.dropFirst(prefix.count)) : nil
            }
        }
    }
}
