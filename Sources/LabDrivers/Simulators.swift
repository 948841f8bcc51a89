import Foundation
public import LabCore
public import LabSpec
public import LabTransport
import Synchronization

/// What a simulator served on each read-only channel, in order, so that tests can compare the
/// stored data with what the "instrument" actually produced; an array channel's elements one after another.
public final class ServedValues: Sendable {
    private let values = Mutex<[String: [Double]]>([:])

    public init() {}

    func record(_ channel: String, _ value: Double) {
        values.withLock { $0[channel, default: []].append(value) }
    }

    public subscript(channel: String) -> [Double] { values.withLock { $0[channel] ?? [] } }
}

/// A SCPI device's error queue, which `SYST:ERR?` empties one entry at a time.
private final class SCPIErrorQueue: Sendable { let lines = Mutex<[String]>([]) }

/// What a simulator answers to its driver file's identity query, in the form of a SCPI `*IDN?`
/// reply (maker, model, serial number, firmware): `Serendip,SIM-UV-VIS,0001,1.0`.
public enum SimulatedIdentity {
    public static func answer(for spec: DriverSpec) -> String { "Serendip,SIM-\(spec.name.uppercased()),0001,1.0" }

    /// What a simulator's string channel holds: `SIM-FIRMWARE` for channel `firmware`.
    public static func text(of channel: ChannelSpec) -> String { "SIM-\(channel.name.uppercased())" }
}

/// A Modbus device built from a driver file's register map: on 127.0.0.1 over TCP, or for an RTU
/// driver on a pseudo-terminal (`rtuPath`), answering as unit 1.
public final class ModbusSimulator: Sendable {
    public let spec: DriverSpec
    public let served = ServedValues()
    /// Every write that reached the device, and what its watchdog did, timestamped.
    public let wireLog = WireLog()
    /// Every value a client wrote, per channel, as the device received it.
    public let written = ServedValues()
    private let server: ModbusServer?
    private let rtuServer: ModbusRTUServer?
    private let watchdog: SimulatedWatchdog?

    /// The TCP port (0 for an RTU device).
    public var port: Int { server?.port ?? 0 }
    /// The pseudo-terminal an RTU device answers on.
    public var rtuPath: String? { rtuServer?.path }

    /// `port` is the TCP port to serve on (0: any free one).
    public init(spec: DriverSpec, model: any DeviceModel, port: Int = 0) throws {
        self.spec = spec
        let channels = Array(spec.channels.values)
        let served = self.served, written = self.written
        let wireLog = self.wireLog
        // What the device did on its own, shown in its registers at the next request.
        let ownWrites = Mutex<[(ChannelSpec, Double)]>([])
        var declaredAddress: UInt16?
        if let declared = spec.watchdog, case .holding(let address) = declared.target {
            declaredAddress = address
            watchdog = SimulatedWatchdog {
                for (name, value) in SimulatedWatchdog.safeState(of: spec) {
                    model.didWrite(name, value)
                    wireLog.record(name, value, byDevice: true)
                    if let channel = spec.channel(name) { ownWrites.withLock { $0.append((channel, value)) } }
                }
            }
        } else {
            watchdog = nil
        }
        let watchdog = self.watchdog, watchdogAddress = declaredAddress
        var sizes = Self.sizes(channels)
        if let watchdogAddress { sizes.holding = max(sizes.holding, Int(watchdogAddress) + 1) }
        var identity: (address: UInt16, registers: [UInt16])?
        if case .holding(let address, let count)? = spec.identity {
            identity = (address, ModbusInstrument.registers(SimulatedIdentity.answer(for: spec), count: count))
            sizes.holding = max(sizes.holding, Int(address) + count)
        }
        let identityRegisters = identity
        // The driver's init writes land in registers of their own, logged as channel `init`.
        var initHolding: [UInt16] = [], initCoils: [UInt16] = []
        for step in spec.initSteps {
            switch step.action {
            case .holding(let address, _): initHolding.append(address); sizes.holding = max(sizes.holding, Int(address) + 1)
            case .coil(let address, _): initCoils.append(address); sizes.coils = max(sizes.coils, Int(address) + 1)
            case .command: break
            }
        }
        let initRegisters = initHolding, initBits = initCoils
        let texts = channels.filter(\.isText).map { ($0, ModbusFloat.encode(string: String(SimulatedIdentity.text(of: $0).prefix(2 * $0.textRegisters)),
                                                                              registers: $0.textRegisters, $0.wordOrder.modbus) ?? []) }
        let handler: ModbusServer.Handler = { bank, request in
            for (channel, registers) in texts {
                switch channel.register {
                case .holding(let address): for (i, r) in registers.enumerated() { bank.setHolding(address + UInt16(i), r) }
                case .input(let address): for (i, r) in registers.enumerated() { bank.setInput(address + UInt16(i), r) }
                default: break
                }
            }
            for address in request.touchesHoldingRegisters ? initRegisters : request.touchesCoils ? initBits : [] {
                if let value = request.writtenValue(at: address) { wireLog.record("init", Double(value)) }
            }
            if let identityRegisters, request.touchesHoldingRegisters {
                for (i, r) in identityRegisters.registers.enumerated() { bank.setHolding(identityRegisters.address + UInt16(i), r) }
            }
            for (channel, value) in ownWrites.withLock({ writes in defer { writes = [] }; return writes }) {
                switch channel.register {
                case .holding(let address):
                    for (i, r) in ModbusInstrument.encode(value, channel).enumerated() { bank.setHolding(address + UInt16(i), r) }
                case .coil(let address): bank.setCoil(address, value != 0)
                default: break
                }
            }
            if let watchdogAddress, request.touchesHoldingRegisters, let seconds = request.writtenValue(at: watchdogAddress) {
                watchdog?.fed(seconds: Double(seconds))
                wireLog.record("watchdog", Double(seconds))
            }
            for channel in channels where !channel.isText {
                switch channel.register {
                case .input(let address) where request.touchesInputRegisters && request.covers(address, count: channel.registerCount):
                    let value = (try? model.value(of: channel.name)) ?? .nan
                    let registers = ModbusInstrument.encode(value, channel)
                    served.record(channel.name, Self.decoded(registers, channel))
                    for (i, r) in registers.enumerated() { bank.setInput(address + UInt16(i), r) }
                case .holding(let address) where !channel.writable && request.written.isEmpty && request.touchesHoldingRegisters
                    && request.covers(address, count: channel.registerCount):
                    // A read-only value many devices keep in holding registers (a totaliser, a status word).
                    let registers = ModbusInstrument.encode((try? model.value(of: channel.name)) ?? .nan, channel)
                    served.record(channel.name, Self.decoded(registers, channel))
                    for (i, r) in registers.enumerated() { bank.setHolding(address + UInt16(i), r) }
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
                    wireLog.record(channel.name, Self.decoded(registers, channel))
                case .coil(let address) where request.touchesCoils:
                    if let bit = request.writtenValue(at: address) {
                        written.record(channel.name, Double(bit))
                        model.didWrite(channel.name, Double(bit))
                        wireLog.record(channel.name, Double(bit))
                    }
                default:
                    break
                }
            }
        }
        if spec.transport == .modbusRTU {
            rtuServer = try ModbusRTUServer(unit: 1, sizes: sizes, handler: handler)
            server = nil
        } else {
            server = try ModbusServer(sizes: sizes, port: port, handler: handler)
            rtuServer = nil
        }
    }

    public func stop() {
        watchdog?.stop()
        server?.stop()
        rtuServer?.stop()
    }

    deinit { watchdog?.stop() }

    /// As if its cable were pulled: open connections are closed and connects refused. The device
    /// keeps running (its watchdog too).
    public func unplug() { server?.unplug() }

    /// Listens again on the same port.
    public func plugIn() { server?.plugIn() }

    private static func decoded(_ registers: [UInt16], _ channel: ChannelSpec) -> Double {
        ModbusInstrument.decode(registers, channel).asDouble
    }

    private static func sizes(_ channels: [ChannelSpec]) -> ModbusServer.TableSizes {
        var sizes = ModbusServer.TableSizes()
        for channel in channels {
            switch channel.register {
            case .holding(let a): sizes.holding = max(sizes.holding, Int(a) + channel.registerCount)
            case .input(let a): sizes.input = max(sizes.input, Int(a) + channel.registerCount)
            case .coil(let a): sizes.coils = max(sizes.coils, Int(a) + 1)
            case .discreteInput(let a): sizes.discreteInputs = max(sizes.discreteInputs, Int(a) + 1)
            case .command, .plugin: break
            }
        }
        return sizes
    }
}

/// An ASCII command/response device on a pseudo-terminal, built from a driver file's command set.
public final class SerialSimulator: Sendable {
    public let spec: DriverSpec
    public let served = ServedValues()
    /// Every write that reached the device, and what its watchdog did, timestamped.
    public let wireLog = WireLog()
    /// Every value a client wrote, per channel, as the device received it.
    public let written = ServedValues()
    private let server: LineServer
    private let watchdog: SimulatedWatchdog?
    private let directory: String

    /// A stable path to the device (a symbolic link, as /dev/serial/by-id gives one): gone while
    /// unplugged, pointing at the new pseudo-terminal after `plugIn()`.
    public let path: String

    public init(spec: DriverSpec, model: any DeviceModel) throws {
        self.spec = spec
        let served = self.served, written = self.written
        let wireLog = self.wireLog
        let commands = spec.channels.values.compactMap { channel -> (ChannelSpec, String?, ChannelSpec.WriteCommand?)? in
            guard case .command(let query, let write) = channel.register else { return nil }
            return (channel, query, write)
        }
        var declaredCommand: ChannelSpec.WriteCommand?
        if let declared = spec.watchdog, case .command(let template) = declared.target {
            declaredCommand = .template(template)
            watchdog = SimulatedWatchdog {
                for (name, value) in SimulatedWatchdog.safeState(of: spec) {
                    model.didWrite(name, value)
                    wireLog.record(name, value, byDevice: true)
                }
            }
        } else {
            watchdog = nil
        }
        let watchdog = self.watchdog, watchdogCommand = declaredCommand
        var identityQuery: String?
        if case .command(let query)? = spec.identity { identityQuery = query }
        let query = identityQuery, identityAnswer = SimulatedIdentity.answer(for: spec)
        let steps = spec.initSteps
        // A SCPI device is silent on a command and keeps its errors for SYST:ERR?; others say OK, or ERR.
        let scpi = spec.scpi, done: String? = spec.scpi ? nil : "OK"
        let refusal = if case .prefixes(let prefixes) = spec.errorReplies, let first = prefixes.first { first } else { "ERR" }
        let errorQueue = SCPIErrorQueue()
        let refuse = { @Sendable (reason: String, scpiError: String) -> String? in
            guard scpi else { return "\(refusal) \(reason)" }
            errorQueue.lines.withLock { $0.append(scpiError) }
            return nil
        }
        server = try LineServer(terminator: spec.serial.terminator) { line in
            if line == query { return identityAnswer }
            if scpi, line == SerialInstrument.scpiErrorQuery {
                return errorQueue.lines.withLock { $0.isEmpty ? "+0,\"No error\"" : $0.removeFirst() }
            }
            // Every init step is understood: answered as the driver file expects, or OK.
            if let step = steps.first(where: { if case .command(line, _) = $0.action { true } else { false } }),
               case .command(_, let expect) = step.action {
                wireLog.record("init", Double(step.number))
                return expect ?? done
            }
            if let seconds = watchdogCommand.flatMap({ Self.written(line, by: $0) }) {
                watchdog?.fed(seconds: seconds)
                wireLog.record("watchdog", seconds)
                return done
            }
            for (channel, query, write) in commands {
                if line == query, let layout = channel.array {
                    // Every element in its shortest exact form: the reading arrives bit for bit.
                    do {
                        let values = try model.values(of: channel.name, along: layout.positions)
                        values.forEach { served.record(channel.name, $0) }
                        return values.map { String($0) }.joined(separator: ",")
                    } catch {
                        return "\(refusal) \(error)"
                    }
                }
                if line == query, channel.isText { return SimulatedIdentity.text(of: channel) }
                if line == query {
                    do {
                        let value = try model.value(of: channel.name)
                        served.record(channel.name, value)
                        return channel.type == .bool ? (value != 0 ? "1" : "0") : String(value)
                    } catch {
                        return "\(refusal) \(error)"
                    }
                }
                if let value = write.flatMap({ Self.written(line, by: $0) }) {
                    written.record(channel.name, value)
                    model.didWrite(channel.name, value)
                    wireLog.record(channel.name, value)
                    return done
                }
            }
            return refuse("unknown command '\(line)'", "-113,\"Undefined header\"")
        }
        var template = Array((FileManager.default.temporaryDirectory.path + "/serendip-tty.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            server.stop()
            throw LabError(.transport, "cannot create a directory for the simulated device's path")
        }
        directory = String(cString: made)
        path = directory + "/" + spec.name
        pointPath()
    }

    public func stop() {
        watchdog?.stop()
        server.stop()
        unlink(path)
        rmdir(directory)
    }

    deinit { stop() }

    /// As if its USB adapter were pulled: the pseudo-terminal closes (a driver holding it sees a
    /// hang-up) and `path` disappears. The device keeps running (its watchdog too).
    public func unplug() {
        unlink(path)
        server.unplug()
    }

    /// A new pseudo-terminal, reachable at the same `path`.
    public func plugIn() {
        server.plugIn()
        pointPath()
    }

    /// Re-points `path` at the pseudo-terminal now served, replacing the link in one step.
    private func pointPath() {
        let target = server.path
        guard !target.isEmpty else { return }
        let next = path + ".new"
        unlink(next)
        symlink(target, next)
        rename(next, path)
    }

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
