public import LabCore
public import LabSpec
public import LabTransport

/// The simulators behind a lab config's `simulate: true` instruments, each served over the real
/// transport its driver names (Modbus TCP on 127.0.0.1, or a pty), behind the behaviour its driver
/// file declares (`simulation:`, a `DeclaredModel`); without one, the toy chemistry behind the
/// thermo-reactor and uv-vis drivers, a toy beaker behind the pump, balance and pH meter, and an
/// inert model behind any other.
public final class SimulatedLab: Sendable {
    /// The chemistry of the first station (and of instruments without one).
    public let chemistry: ToyChemistry
    public let bench: ToyBench
    public let modbus: [String: ModbusSimulator]
    public let serial: [String: SerialSimulator]
    /// Plugin instruments: `serendip simulate` cannot run a plugin on its virtual clock, so they are
    /// simulated in process from their driver file, behind these models.
    public let plugins: [String: any DeviceModel]

    /// `portBase`: the Modbus TCP simulators listen on consecutive ports from it, in instrument name
    /// order (nil: on free ports the system picks).
    public init(config: LabConfig, clock: any LabClock, portBase: Int? = nil) throws {
        let chemistry = ToyChemistry(clock: clock, seed: config.simulation.seed)
        let bench = ToyBench(seed: config.simulation.seed)
        var modbus: [String: ModbusSimulator] = [:], serial: [String: SerialSimulator] = [:], plugins: [String: any DeviceModel] = [:]
        let models = Self.models(for: config, chemistry: chemistry, bench: bench)
        var nextPort = portBase
        for (name, binding) in config.instruments.sorted(by: { $0.key < $1.key }) where binding.connection == .simulated {
            let model = models[name] ?? InertModel()
            switch binding.driver.transport {
            case .modbus:
                modbus[name] = try ModbusSimulator(spec: binding.driver, model: model, port: nextPort ?? 0)
                nextPort = nextPort.map { $0 + 1 }
            case .modbusRTU: modbus[name] = try ModbusSimulator(spec: binding.driver, model: model)
            case .serial: serial[name] = try SerialSimulator(spec: binding.driver, model: model)
            case .plugin: plugins[name] = model
            }
        }
        self.chemistry = chemistry
        self.bench = bench
        self.modbus = modbus
        self.serial = serial
        self.plugins = plugins
    }

    /// The device model behind each instrument of the lab, by instrument name, all over one fresh
    /// toy chemistry and bench on `clock` (the same choice the simulators make).
    public static func models(for config: LabConfig, clock: any LabClock) -> [String: any DeviceModel] {
        models(for: config, chemistry: ToyChemistry(clock: clock, seed: config.simulation.seed),
               bench: ToyBench(seed: config.simulation.seed))
    }

    /// Each station has a chemistry of its own (its reactor feeds its photometer): the first station
    /// by name, and instruments without a station, share `chemistry`.
    static func models(for config: LabConfig, chemistry: ToyChemistry, bench: ToyBench) -> [String: any DeviceModel] {
        var chemistries: [String: ToyChemistry] = [:]
        for (index, station) in Set(config.stations.values).sorted().enumerated() {
            chemistries[station] = index == 0 ? chemistry : ToyChemistry(clock: chemistry.clock, seed: config.simulation.seed &+ UInt64(index))
        }
        return config.instruments.mapValues { binding -> any DeviceModel in
            model(driver: binding.driver, chemistry: binding.station.flatMap { chemistries[$0] } ?? chemistry, bench: bench,
                  seed: config.simulation.seed, stream: binding.name)
        }
    }

    /// What a driver file's `simulation:` block declares; without one, the physics behind a shipped
    /// driver by its name, and an inert device behind any other. `seed` and `stream` (the
    /// instrument's name) seed a declared model's noise.
    public static func model(driver: DriverSpec, chemistry: ToyChemistry, bench: ToyBench, seed: UInt64 = 1, stream: String = "") -> any DeviceModel {
        if driver.simulation != nil { return DeclaredModel(spec: driver, clock: chemistry.clock, seed: seed, stream: stream) }
        return switch driver.name {
        case "thermo-reactor": chemistry.reactor
        case "uv-vis": chemistry.spectrometer
        case "syringe-pump": bench.pump
        case "balance": bench.balance
        case "ph-meter": bench.phMeter
        case "dosing-balance": DosingBalanceModel()
        default: InertModel()
        }
    }

    /// Where a simulated instrument can be reached.
    public func connection(for name: String) -> LabConfig.Connection? {
        if let sim = modbus[name], let path = sim.rtuPath {
            return .modbusRTU(ModbusRTUAddress(port: .path(path), line: sim.spec.serial.line, unit: 1))
        }
        if let sim = modbus[name] { return .modbusTCP(host: "127.0.0.1", port: sim.port, unit: 1) }
        if let sim = serial[name] { return .serial(SerialAddress(port: .path(sim.path), line: sim.spec.serial.line)) }
        return nil
    }

    public func stop() {
        modbus.values.forEach { $0.stop() }
        serial.values.forEach { $0.stop() }
    }
}

/// Connects the instruments of a lab config (simulated ones through `simulators`).
public enum InstrumentConnector {
    /// Connects the instruments a protocol's roles need (all of the lab's without a protocol), keyed by
    /// role: each role gets the lab's instrument of its name if that has the role's driver, otherwise
    /// the first free one of its driver by name.
    /// `traffic` gives the recorder of an instrument whose lab config says `record_traffic: true`.
    public static func connect(_ config: LabConfig, simulators: SimulatedLab? = nil,
                               for definition: ProtocolDefinition? = nil,
                               traffic: (@Sendable (String) -> TrafficTap)? = nil,
                               ports: @escaping SerialPortLister = SerialPorts.list) throws -> [String: any Instrument] {
        let wanted = try definition.map { try bindings(for: $0, in: config) } ?? config.instruments
        return try connect(wanted, simulators: simulators, traffic: traffic, ports: ports)
    }

    /// Role → the lab's instrument serving it (`InstrumentAssignment`: by driver type, the role's
    /// own name preferred, a station's instruments only together).
    public static func bindings(for definition: ProtocolDefinition, in config: LabConfig) throws -> [String: LabConfig.Binding] {
        let needs = Dictionary(uniqueKeysWithValues: definition.instruments.map { ($0.role, $0.driver) })
        guard let assignment = InstrumentAssignment.assign(needs, from: config.instruments.mapValues(\.driver.name),
                                                           stations: config.stations) else {
            let wanted = definition.instruments.map { "\($0.role) (\($0.driver))" }.joined(separator: ", ")
            throw LabError(.unknownReference, "the lab '\(config.name)' cannot serve \(wanted) at once",
                           at: definition.instruments.first?.location)
        }
        return assignment.mapValues { config.instruments[$0]! }
    }

    /// Connects the lab's instruments of these names (an unknown name is refused).
    public static func connect(_ config: LabConfig, simulators: SimulatedLab? = nil, named names: [String],
                               traffic: (@Sendable (String) -> TrafficTap)? = nil,
                               ports: @escaping SerialPortLister = SerialPorts.list) throws -> [String: any Instrument] {
        var wanted: [String: LabConfig.Binding] = [:]
        for name in names {
            guard let binding = config.instruments[name] else {
                throw LabError(.unknownReference, "the lab '\(config.name)' has no instrument '\(name)'")
            }
            wanted[name] = binding
        }
        return try connect(wanted, simulators: simulators, traffic: traffic, ports: ports)
    }

    /// `ports` lists the machine's serial ports, where an instrument bound by a USB serial number is
    /// looked up each time its line is opened.
    private static func connect(_ wanted: [String: LabConfig.Binding], simulators: SimulatedLab?,
                                traffic: (@Sendable (String) -> TrafficTap)?,
                                ports: @escaping SerialPortLister) throws -> [String: any Instrument] {
        var instruments: [String: any Instrument] = [:]
        for (name, binding) in wanted {
            let tap = binding.recordTraffic ? traffic?(name) : nil
            var connection = binding.connection
            // A simulated device's max_rate is judged in its simulated time.
            var clock: any LabClock = ScaledClock()
            // A role is served by an instrument of another name (`pump` by `syringe`): its simulator
            // is the instrument's.
            if connection == .simulated, let simulators, let model = simulators.plugins[binding.name] {
                instruments[name] = InProcessInstrument(name: name, spec: binding.driver, model: model, clock: simulators.chemistry.clock)
                continue
            }
            if connection == .simulated {
                guard let simulators, let simulated = simulators.connection(for: binding.name) else {
                    throw LabError(.instrumentLost, "\(name) is simulated but no simulator is running")
                }
                connection = simulated
                clock = simulators.chemistry.clock
            }
            guard connection != .simulated else { continue }
            instruments[name] = try instrument(name, binding.driver, at: connection, tap: tap, clock: clock, ports: ports)
        }
        return instruments
    }

    /// One instrument of `driver` at a real (or served) address. `link` may wrap a Modbus link (the
    /// conformance check counts the writes passed to it); `tap` sees a serial line's traffic too.
    public static func instrument(_ name: String, _ driver: DriverSpec, at connection: LabConfig.Connection,
                                  tap: TrafficTap? = nil, clock: any LabClock = ScaledClock(),
                                  ports: @escaping SerialPortLister = SerialPorts.list,
                                  link: (any ModbusClient) -> any ModbusClient = { $0 }) throws -> any DriverBackedInstrument {
        switch connection {
        case .modbusTCP(let host, let port, let unit):
            let client = ModbusTCPClient(.init(host: host, port: port, unit: unit, responseTimeout: driver.responseTimeout), tap: tap)
            return ModbusInstrument(name: name, spec: driver, client: link(client), clock: clock)
        case .modbusRTU(let address):
            let line = ModbusRTULine(port: address.port, baud: address.line.baud, parity: address.line.parity,
                                     stopBits: address.line.stopBits)
            let timing = ModbusRTUBus.Timing(response: driver.responseTimeout, byte: driver.byteTimeout)
            let client = ModbusRTUClient(bus: try ModbusRTUBus.shared(line, ports: ports), unit: address.unit, timing: timing)
            return ModbusInstrument(name: name, spec: driver, client: link(client), clock: clock)
        case .serial(let address):
            let s = driver.serial
            let line = SerialLine(port: address.port, settings: address.line, terminator: s.terminator, timeout: s.timeoutSeconds,
                                  ports: ports, tap: tap)
            return SerialInstrument(name: name, spec: driver, line: line, clock: clock)
        case .plugin(let command):
            return PluginInstrument(name: name, spec: driver, command: command)
        case .simulated:
            throw LabError(.instrumentLost, "\(name) is simulated but no simulator is running")
        }
    }
}
