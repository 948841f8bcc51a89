import Foundation
public import LabCore

/// A lab: which instrument instances exist, which driver each uses, and where each is connected.
public struct LabConfig: Sendable {
    public enum Connection: Sendable, Hashable {
        case modbusTCP(host: String, port: Int, unit: Int)
        case modbusRTU(ModbusRTUAddress)
        case serial(SerialAddress)
        case simulated
        /// An out-of-process driver (docs/plugins.md), started from the lab config's folder.
        case plugin(PluginCommand)
    }

    /// `plugin: { command: [python3, plugins/balance.py], timeout: 2 s, options: { port: /dev/ttyUSB0 } }`.
    public struct PluginCommand: Sendable, Hashable {
        /// The executable (looked up on PATH) and its arguments.
        public var command: [String]
        /// The folder the plugin runs in: the lab config's, so relative paths in `command` are the config's.
        public var directory: String
        /// Seconds each request may take; nil leaves it to the plugin's `describe` (or 1 s).
        public var timeout: Double?
        /// Passed verbatim to the plugin's `connect`.
        public var options: [String: String]

        public init(command: [String], directory: String, timeout: Double? = nil, options: [String: String] = [:]) {
            self.command = command; self.directory = directory; self.timeout = timeout; self.options = options
        }
    }

    public struct Binding: Sendable {
        public var name: String
        public var driver: DriverSpec
        public var connection: Connection
        /// Instruments of one station (a reactor and the photometer plumbed to it) are only used
        /// together by a run; an instrument without a station is shared by all.
        public var station: String?
        /// Whether every request and reply on its wire is stored (`record_traffic: true`).
        public var recordTraffic = false
    }

    /// Instrument → station, for the instruments that belong to one.
    public var stations: [String: String] { instruments.compactMapValues(\.station) }

    public struct Simulation: Sendable, Hashable {
        public var speed: Double = 1
        public var seed: UInt64 = 1
    }

    public var name: String
    public var instruments: [String: Binding]
    public var simulation: Simulation
    /// Suspenders and interlocks, in file order; see `InterlockSpec`.
    public var interlocks: [InterlockSpec] = []
    public var source: SourceText

    /// Driver specs by driver name, as a protocol validator wants them.
    public var drivers: [String: DriverSpec] {
        Dictionary(instruments.values.map { ($0.driver.name, $0.driver) }, uniquingKeysWith: { a, _ in a })
    }

    /// Loads a lab config; driver paths are relative to the config file.
    public static func load(path: String) throws -> LabConfig {
        let text = try readUserFile(path)
        let source = YAMLSource(path: path, text: text)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        var config: LabConfig?
        // Each driver file's text, so that a diagnostic in it shows its own line, not the config's.
        var sources = [path: text]
        if let root = source.root(), let top = source.mapping(root, "lab config") {
            let name = top.required("lab").flatMap { source.string($0, "lab") } ?? "lab"
            var bindings: [String: Binding] = [:]
            // Instruments already reported as broken: an interlock naming one adds no second error.
            var broken: Set<String> = []
            if let node = top.required("instruments"), let map = source.mapping(node, "instruments") {
                for (instrument, _, value) in map.pairs {
                    if let binding = try binding(instrument, value, source: source, directory: directory, sources: &sources) {
                        bindings[instrument] = binding
                    } else {
                        broken.insert(instrument)
                    }
                }
            }
            let interlocks = top.optional("interlocks").map {
                InterlockSpec.parse($0, instruments: bindings, failedInstruments: broken, source: source)
            } ?? []
            var simulation = Simulation()
            if let node = top.optional("simulation"), let map = source.mapping(node, "simulation") {
                if let speed = map.optional("speed").flatMap({ source.number($0, "speed") }) {
                    if speed > 0 { simulation.speed = speed } else { source.error(map.optional("speed"), "speed must be positive") }
                }
                if let seed = map.optional("seed").flatMap({ source.integer($0, "seed", in: 0...Int.max) }) {
                    simulation.seed = UInt64(seed)
                }
                map.rejectUnknownKeys()
                refuseScaledTimeOnRealInstruments(simulation.speed, at: map.optional("speed"), bindings, source: source)
            }
            top.rejectUnknownKeys()
            config = LabConfig(name: name, instruments: bindings, simulation: simulation, interlocks: interlocks,
                               source: SourceText(path: path, text: text, sha256: source.sha256))
        }
        guard let config, source.diagnostics.isEmpty else { throw ValidationError(source.diagnostics, sources: sources) }
        return config
    }

    /// One scaled clock drives a whole run, so a speed other than 1 would scale every hold, wait and
    /// timeout on a real device too: a 10 min hold at speed 3000 would last 0.2 s on the real reactor.
    private static func refuseScaledTimeOnRealInstruments(_ speed: Double, at node: Node?, _ bindings: [String: Binding],
                                                         source: YAMLSource) {
        let real = bindings.values.filter { $0.connection != .simulated }.map(\.name).sorted()
        guard speed != 1, !real.isEmpty else { return }
        let pace = speed > 1 ? String(format: "%g times too fast", speed) : String(format: "%g times too slowly", 1 / speed)
        let names = real.map { "'\($0)'" }.joined(separator: ", ")
        source.error(node, String(format: "simulation speed %g would run holds, waits and timeouts ", speed) + pace + " "
                         + "on the real instrument\(real.count == 1 ? "" : "s") \(names)",
                     hint: "set 'speed: 1' or remove it, or give every instrument 'simulate: true'")
    }

    private static func pluginCommand(_ node: Node, source: YAMLSource, directory: URL) -> PluginCommand? {
        guard let map = source.mapping(node, "plugin") else { return nil }
        var command: [String] = []
        if let node = map.required("command", hint: "the executable and its arguments, as in [python3, plugins/balance.py]") {
            if let items = node.sequence, !items.isEmpty {
                command = items.compactMap { source.string($0, "command") }
            } else {
                source.error(node, "command must be a list: the executable, then its arguments", hint: "command: [python3, plugins/balance.py]")
            }
        }
        var timeout: Double?
        if let node = map.optional("timeout"), let expr = source.expression(node, "timeout") {
            if let seconds = try? ExprEnvironment().quantity(expr).seconds, seconds > 0, seconds.isFinite { timeout = seconds }
            else { source.error(node, "timeout must be a positive duration such as '2 s'") }
        }
        var options: [String: String] = [:]
        if let node = map.optional("options"), let m = source.mapping(node, "options") {
            for (key, _, value) in m.pairs { options[key] = source.string(value, "option '\(key)'") }
        }
        map.rejectUnknownKeys()
        guard !command.isEmpty else { return nil }
        return PluginCommand(command: command, directory: directory.path, timeout: timeout, options: options)
    }

    /// `modbus: { host: 10.0.0.7, port: 502, unit: 1 }` or `modbus: "modbus-tcp://10.0.0.7:502?unit=1"`.
    private static func modbusTCP(_ node: Node, source: YAMLSource) -> (String, Int, Int)? {
        if node.scalar != nil, let text = source.string(node, "modbus") {
            return source.address(node, forms: ModbusTCPAddress.forms) { () throws(AddressProblem) in try ModbusTCPAddress.parse(text) }
        }
        guard let m = source.mapping(node, "modbus") else { return nil }
        let host = m.required("host").flatMap { source.string($0, "host") } ?? "127.0.0.1"
        let port = m.optional("port").flatMap { source.integer($0, "port", in: 1...65535) } ?? 502
        let unit = m.optional("unit").flatMap { source.integer($0, "unit", in: 0...247) } ?? 1
        m.rejectUnknownKeys()
        return (host, port, unit)
    }

    private static func binding(_ name: String, _ node: Node, source: YAMLSource, directory: URL,
                                sources: inout [String: String]) throws -> Binding? {
        guard let map = source.mapping(node, "instrument '\(name)'") else { return nil }
        guard let driverNode = map.required("driver", hint: "a path to a driver file"),
              let driverPath = source.string(driverNode, "driver") else { return nil }
        let resolved = URL(fileURLWithPath: driverPath, relativeTo: directory).path
        let driver: DriverSpec
        do {
            driver = try DriverSpec.load(path: resolved)
        } catch let error as ValidationError {
            source.diagnostics.append(contentsOf: error.diagnostics)
            sources.merge(error.sources) { old, _ in old }
            return nil
        } catch {
            source.error(driverNode, "cannot load driver: \(error)")
            return nil
        }
        var connection: Connection?
        if let node = map.optional("simulate"), source.bool(node, "simulate") == true { connection = .simulated }
        // An address already refused needs no second error saying the connection is missing.
        var refusedAddress = false
        if let node = map.optional("modbus") {
            if let (host, port, unit) = modbusTCP(node, source: source) { connection = .modbusTCP(host: host, port: port, unit: unit) }
            else { refusedAddress = true }
        }
        if let node = map.optional("modbus-rtu") {
            if let address = ModbusRTUAddress.parse(node, defaults: driver.serial.line, source: source) {
                connection = .modbusRTU(address)
            } else {
                refusedAddress = true
            }
        }
        if let node = map.optional("serial") {
            if let address = SerialAddress.parse(node, defaults: driver.serial.line, source: source) { connection = .serial(address) }
            else { refusedAddress = true }
        }
        if let node = map.optional("plugin"), let command = pluginCommand(node, source: source, directory: directory) {
            connection = .plugin(command)
        }
        let station = map.optional("station").flatMap { source.string($0, "station") }
        let recordTraffic = map.optional("record_traffic").flatMap { source.bool($0, "record_traffic") } ?? false
        map.rejectUnknownKeys()
        if let simulate = map.optional("simulate"), source.bool(simulate, "simulate") == true,
           let real = ["modbus", "modbus-rtu", "serial", "plugin"].first(where: { map.optional($0) != nil }) {
            // Either choice made silently would surprise someone: the device driven by a config that
            // says simulate, or a simulation run by one that names the device.
            source.error(map.keyNode("simulate") ?? simulate, "'\(name)' has both 'simulate: true' and '\(real):'",
                         hint: "remove '\(real):' to simulate it, or 'simulate: true' to drive the device at that address")
            return nil
        }
        guard let connection else {
            if refusedAddress { return nil }
            source.error(node, "instrument '\(name)' has no connection", hint: "add 'modbus:', 'modbus-rtu:', 'serial:', 'plugin:' or 'simulate: true'")
            return nil
        }
        switch (driver.transport, connection) {
        case (.modbus, .serial), (.modbusRTU, .serial):
            source.error(map.keyNode("serial"), "'\(name)' uses the Modbus driver '\(driver.name)' but is connected by 'serial:'",
                         hint: "a Modbus device on a serial line is 'modbus-rtu: { port: /dev/ttyUSB0, baud: 19200, parity: E, unit: 1 }' "
                             + "(or 'usb: { serial: FT4XYZ12 }' for 'port:'); "
                             + "over TCP it is 'modbus: { host: ..., port: 502, unit: 1 }'; or use 'simulate: true'")
            return nil
        case (.serial, .modbusTCP), (.serial, .modbusRTU):
            let key = map.keyNode("modbus") ?? map.keyNode("modbus-rtu")
            source.error(key, "'\(name)' uses the serial driver '\(driver.name)' but is connected by Modbus",
                         hint: "give its port, as in 'serial: /dev/ttyUSB0', or use 'simulate: true'")
            return nil
        case (.plugin, .plugin):
            break
        case (.modbus, _), (.modbusRTU, _), (.serial, _):
            if case .plugin = connection {
                source.error(map.keyNode("plugin"), "'\(name)' uses the \(driver.transport.rawValue) driver '\(driver.name)' but is connected by 'plugin:'",
                             hint: "a plugin's driver file says 'transport: plugin'")
                return nil
            }
        case (.plugin, _):
            source.error(node, "'\(name)' uses the plugin driver '\(driver.name)' but has no 'plugin:' to start",
                         hint: "add 'plugin: { command: [python3, plugins/x.py] }'; a plugin that can simulate its device takes a flag for it in its command")
            return nil
        }
        return Binding(name: name, driver: driver, connection: connection, station: station, recordTraffic: recordTraffic)
    }
}
