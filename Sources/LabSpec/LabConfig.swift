import Foundation
public import LabCore

/// A lab: which instrument instances exist, which driver each uses, and where each is connected.
public struct LabConfig: Sendable {
    public enum Connection: Sendable, Hashable {
        case modbusTCP(host: String, port: Int, unit: Int)
        case modbusRTU(ModbusRTUAddress)
        case serial(path: String)
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
        if let node = map.optional("modbus"), let m = source.mapping(node, "modbus") {
            let host = m.required("host").flatMap { source.string($0, "host") } ?? "127.0.0.1"
            let port = m.required("port").flatMap { source.integer($0, "port", in: 1...65535) } ?? 502
            let unit = m.optional("unit").flatMap { source.integer($0, "unit", in: 0...247) } ?? 1
            m.rejectUnknownKeys()
            connection = .modbusTCP(host: host, port: port, unit: unit)
        }
        // A modbus-rtu address already refused needs no second error saying the connection is missing.
        var refusedAddress = false
        if let node = map.optional("modbus-rtu") {
            if let address = ModbusRTUAddress.parse(node, defaults: driver.serial, source: source) {
                connection = .modbusRTU(address)
            } else {
                refusedAddress = true
            }
        }
        if let path = map.optional("serial").flatMap({ source.string($0, "serial") }) { connection = .serial(path: path) }
        if let node = map.optional("plugin"), let command = pluginCommand(node, source: source, directory: directory) {
            connection = .plugin(command)
        }
        let station = map.optional("station").flatMap { source.string($0, "station") }
        let recordTraffic = map.optional("record_traffic").flatMap { source.bool($0, "record_traffic") } ?? false
        map.rejectUnknownKeys()
        guard let connection else {
            if refusedAddress { return nil }
            source.error(node, "instrument '\(name)' has no connection", hint: "add 'modbus:', 'modbus-rtu:', 'serial:', 'plugin:' or 'simulate: true'")
            return nil
        }
        switch (driver.transport, connection) {
        case (.modbus, .serial), (.modbusRTU, .serial):
            source.error(map.keyNode("serial"), "'\(name)' uses the Modbus driver '\(driver.name)' but is connected by 'serial:'",
                         hint: "a Modbus device on a serial line is 'modbus-rtu: { port: /dev/ttyUSB0, baud: 19200, parity: E, unit: 1 }'; "
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

/// Where a Modbus RTU device is: its serial port, the line's settings and its unit id. In a lab
/// config either `modbus-rtu: { port: /dev/ttyUSB0, baud: 19200, parity: E, unit: 3 }` or
/// `modbus-rtu: "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3"`; what is left out comes
/// from the driver file's `serial:` settings (unit 1).
public struct ModbusRTUAddress: Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var baud: Int
    /// `N`, `E` or `O`.
    public var parity: String
    public var stopBits: Int
    public var unit: Int

    public init(path: String, baud: Int = 9600, parity: String = "N", stopBits: Int = 1, unit: Int = 1) {
        self.path = path; self.baud = baud; self.parity = parity; self.stopBits = stopBits; self.unit = unit
    }

    public var description: String { "modbus-rtu://\(path)?baud=\(baud)&parity=\(parity)&stop_bits=\(stopBits)&unit=\(unit)" }

    /// The address form; nil with `problem` set when it is not one.
    public static func parse(_ text: String, defaults: SerialSettings, problem: inout String?) -> ModbusRTUAddress? {
        let scheme = "modbus-rtu://"
        guard text.hasPrefix(scheme) else {
            problem = "'\(text)' is not a modbus-rtu:// address"
            return nil
        }
        let parts = text.dropFirst(scheme.count).split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var address = ModbusRTUAddress(path: String(parts[0]), baud: defaults.baud, parity: defaults.parity, stopBits: defaults.stopBits)
        guard address.path.hasPrefix("/") else {
            problem = "'\(text)' names no port; write it as modbus-rtu:///dev/ttyUSB0?unit=1 (three slashes)"
            return nil
        }
        for pair in parts.count > 1 ? parts[1].split(separator: "&") : [] {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { problem = "'\(pair)' in '\(text)' is not key=value"; return nil }
            if let error = address.set(kv[0], kv[1]) { problem = error; return nil }
        }
        return address
    }

    /// Sets one setting from its text; the problem with it otherwise.
    mutating func set(_ key: String, _ value: String) -> String? {
        switch key {
        case "baud":
            guard let baud = Int(value), SerialSettings.supportedBauds.contains(baud) else {
                return "baud \(value) is not a rate a serial line can be set to"
            }
            self.baud = baud
        case "parity":
            guard ["N", "E", "O"].contains(value) else { return "unknown parity '\(value)' (use N, E or O)" }
            parity = value
        case "stop_bits":
            guard let bits = Int(value), (1...2).contains(bits) else { return "stop_bits must be 1 or 2" }
            stopBits = bits
        case "unit":
            guard let unit = Int(value), (1...247).contains(unit) else { return "unit must be 1 to 247 (0 is broadcast, which gets no reply)" }
            self.unit = unit
        default:
            return "unknown setting '\(key)' (use baud, parity, stop_bits or unit)"
        }
        return nil
    }

    static func parse(_ node: Node, defaults: SerialSettings, source: YAMLSource) -> ModbusRTUAddress? {
        if node.scalar != nil, let text = source.string(node, "modbus-rtu") {
            var problem: String?
            let address = parse(text, defaults: defaults, problem: &problem)
            if let problem { source.error(node, problem, hint: "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3") }
            return address
        }
        guard let map = source.mapping(node, "modbus-rtu") else { return nil }
        guard let path = map.required("port", hint: "the serial port, as in /dev/ttyUSB0").flatMap({ source.string($0, "port") }) else { return nil }
        var address = ModbusRTUAddress(path: path, baud: defaults.baud, parity: defaults.parity, stopBits: defaults.stopBits)
        var failed = false
        for key in ["baud", "parity", "stop_bits", "unit"] {
            guard let valueNode = map.optional(key), let text = source.string(valueNode, key) else { continue }
            if let problem = address.set(key, text) {
                source.error(valueNode, problem)
                failed = true
            }
        }
        map.rejectUnknownKeys()
        return failed ? nil : address
    }
}
