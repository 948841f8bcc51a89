import Foundation
public import LabCore

/// One instrument TYPE, as its driver file describes it: channels, units, limits, safe state.
/// No ports and no addresses: those belong to the lab config.
public struct DriverSpec: Sendable {
    /// `modbus` is a register map reached over TCP (or RTU, if the lab config says so); `modbus-rtu`
    /// the same for a device on a serial line, simulated on a pseudo-terminal; `plugin` an
    /// out-of-process driver (docs/plugins.md), whose channels have no address.
    public enum Transport: String, Sendable { case modbus, modbusRTU = "modbus-rtu", serial, plugin
        public var isModbus: Bool { self == .modbus || self == .modbusRTU }
    }

    public var name: String
    public var vendor: String
    public var transport: Transport
    public var channels: [String: ChannelSpec]
    public var safeState: [(channel: String, value: Value)]
    public var serial: SerialSettings
    public var source: SourceText
    /// How long a Modbus request waits for its reply (`timeout:`; serial lines use `serial.timeout`).
    public var responseTimeout: Double = 1
    /// Modbus RTU: the longest silence allowed between two bytes of one reply (`byte_timeout:`).
    public var byteTimeout: Double = 0.5
    /// The device's own watchdog, if the file declares one.
    public var watchdog: Watchdog? = nil
    /// How the device says what it is (model, serial number, firmware): asked at the start of every
    /// run that uses it, and stored with the run. Nil: the device cannot say.
    public var identity: IdentityQuery? = nil
    /// How its simulator behaves (`simulation:`); nil: the file says nothing, and a built-in model
    /// (or an inert one) stands in.
    public var simulation: DriverSimulation? = nil
    /// Sent in order right after every (re)connect, before anything else (`init:`).
    public var initSteps: [InitStep] = []
    /// The least time between two requests to the device, in seconds (`min_interval:`); 0, none.
    public var minInterval: Double = 0
    /// How a serial device says no (`errors:`); by default a reply starting with `ERR`.
    public var errorReplies: ErrorReplies = .standard
    /// `scpi: true`: writes get no reply; after each write (and after `init:`) `SYST:ERR?` is asked.
    public var scpi: Bool = false

    public func channel(_ name: String) -> ChannelSpec? { channels[name] }

    /// `identity: { query: "*IDN?" }` on a serial line; `identity: { holding: 900, count: 8 }` on
    /// Modbus: that many holding registers of ASCII text, two characters each, high byte first.
    public enum IdentityQuery: Sendable, Hashable, CustomStringConvertible {
        case command(String)
        case holding(address: UInt16, count: Int)

        public var description: String {
            switch self {
            case .command(let query): query
            case .holding(let address, let count): "holding \(address) × \(count)"
            }
        }
    }

    /// A device watchdog: `value` (seconds) is written on connect and rewritten every `feedEvery`;
    /// a device that hears nothing for `value` seconds goes to its own safe state.
    public struct Watchdog: Sendable, Hashable {
        public enum Target: Sendable, Hashable {
            /// Modbus: the holding register the timeout is written to, in whole seconds.
            case holding(UInt16)
            /// Serial: the command sent, with `{value}` replaced by the seconds.
            case command(String)
        }
        public var target: Target
        public var seconds: Double
        public var feedEvery: Double

        public init(target: Target, seconds: Double, feedEvery: Double? = nil) {
            self.target = target; self.seconds = seconds; self.feedEvery = feedEvery ?? seconds / 3
        }
    }
}

public struct SerialSettings: Sendable, Hashable {
    /// Baud, data bits, parity, stop bits and flow control; a lab config may override them.
    public var line = SerialLineSettings()
    public var terminator: String = "\n"
    public var timeoutSeconds: Double = 1

    public var baud: Int {
        get { line.baud }
        set { line.baud = newValue }
    }

    public static var supportedBauds: [Int] { SerialLineSettings.supportedBauds }
}

public struct ChannelSpec: Sendable, Hashable {
    public enum Register: Sendable, Hashable {
        case holding(UInt16), input(UInt16), coil(UInt16), discreteInput(UInt16)
        case command(query: String?, write: WriteCommand?)
        /// A channel of an out-of-process plugin, read and written by its name.
        case plugin
    }

    /// What a serial channel sends to be set: one template with `{value}` in it, or for a boolean
    /// one fixed command per value (`on: "RUN"`, `off: "STOP"`).
    public enum WriteCommand: Sendable, Hashable {
        case template(String)
        case switched(on: String, off: String)

        /// The line sent for a value that already passed the write guard; a boolean in a template is 1 or 0.
        public func text(for value: Value) -> String {
            switch (self, value) {
            case (.switched(let on, let off), .bool(let b)): b ? on : off
            case (.switched(let on, let off), .real(let x)): x != 0 ? on : off
            case (.template(let t), .bool(let b)): t.replacingOccurrences(of: "{value}", with: b ? "1" : "0")
            case (.template(let t), .real(let x)): t.replacingOccurrences(of: "{value}", with: String(x))
            }
        }
    }

    public enum DataType: String, Sendable, Hashable { case float32, float64, uint16, int16, uint32, int32, bool, float, array, string }

    public var name: String
    public var register: Register
    public var type: DataType
    public var wordOrder: WordOrder
    public var unit: LabUnit
    public var writable: Bool
    public var readable: Bool
    public var limits: ClosedRange<Double>?
    /// `max_rate:`, in the channel's unit per second: the fastest the write guard lets it move.
    public var maxRate: Double?
    /// `read_back:` on a serial channel: query it after each write and compare. Nil, no read-back;
    /// otherwise the tolerance in the channel's unit, 0 meaning "to the precision the device prints".
    public var readBackTolerance: Double?
    public var location: SourceLocation
    /// Further attempts of a read whose link broke or got no reply (`retries:`); writes never repeat.
    public var retries: Int = 0
    /// `type: array`: a serial query answered by comma-separated numbers, `length` of them along `axis`.
    public var array: ArrayLayout? = nil
    /// Engineering value = raw register value × `scale` + `offset` (`scale:`, `offset:` in the file);
    /// units, limits and safe states are in engineering units.
    public var scale: Double = 1
    public var offset: Double = 0
    /// `type: string` on Modbus: the registers the text fills, two characters each (`count:`).
    public var textRegisters: Int = 0

    /// A read-only text channel (`type: string`): read at the start of each run and recorded with
    /// it, never measured as a number (docs/decisions/0013-string-channels.md).
    public var isText: Bool { type == .string }

    public var info: ChannelInfo {
        ChannelInfo(unit: unit, writable: writable, limits: limits, isBoolean: type == .bool, readable: readable, array: array)
    }
}

extension ChannelSpec {
    /// The raw values an integer register can hold; nil for floats, bits and serial channels.
    public var registerRange: ClosedRange<Double>? {
        switch register {
        case .holding, .input: break
        default: return nil
        }
        return switch type {
        case .int16: -32768...32767
        case .uint16: 0...65535
        case .int32: -2147483648...2147483647
        case .uint32: 0...4294967295
        default: nil
        }
    }

    /// The register's raw value for a value in the channel's unit.
    public func raw(_ engineering: Double) -> Double {
        if let divisor { (engineering - offset) * divisor } else { (engineering - offset) / scale }
    }

    /// The value in the channel's unit for a raw register value.
    public func engineering(_ raw: Double) -> Double {
        if let divisor { raw / divisor + offset } else { raw * scale + offset }
    }

    /// 10 for a scale of 0.1: 873 / 10 is exactly the 87.3 a person wrote, 873 × 0.1 is not.
    private var divisor: Double? {
        let inverse = 1 / scale
        return abs(scale) < 1 && inverse == inverse.rounded() ? inverse : nil
    }
}

/// The order in which a 32-bit value's bytes travel in two 16-bit registers. Vendors disagree,
/// so a driver file says which one its device uses.
public enum WordOrder: String, Sendable, Hashable, CaseIterable {
    case abcd = "ABCD", cdab = "CDAB", badc = "BADC", dcba = "DCBA"
}

extension DriverSpec {
    public static func load(path: String) throws -> DriverSpec {
        let text = try readUserFile(path)
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(ValidationError) -> DriverSpec {
        let source = YAMLSource(path: path, text: text)
        let spec = source.root().flatMap { parse(root: $0, source: source) }
        guard let spec, source.diagnostics.isEmpty else { throw ValidationError(source.diagnostics, source: text) }
        return spec
    }

    private static func parse(root: Node, source: YAMLSource) -> DriverSpec? {
        guard let top = source.mapping(root, "driver file") else { return nil }
        let name = top.required("driver").flatMap { source.string($0, "driver") }
        let vendor = top.optional("vendor").flatMap { source.string($0, "vendor") } ?? "unknown"
        let transportNode = top.required("transport", hint: "modbus, serial or plugin")
        var transport: Transport?
        if let node = transportNode, let text = source.string(node, "transport") {
            transport = Transport(rawValue: text)
            if transport == nil { source.error(node, "unknown transport '\(text)'", hint: "use modbus, modbus-rtu, serial or plugin") }
        }
        var serial = SerialSettings()
        if let node = top.optional("serial"), let line = source.mapping(node, "serial settings") {
            for key in SerialLineSettings.keys {
                guard let node = line.optional(key), let text = source.string(node, key) else { continue }
                if let (problem, hint) = serial.line.set(key, text) { source.error(node, problem, hint: hint) }
            }
            // RTU frames are 8 data bits by the Modbus standard, and libmodbus drives the line without a handshake.
            if transport == .modbusRTU, serial.line.flowControl != .none {
                source.error(line.optional("flow_control"), "a Modbus RTU line has no flow control", hint: "remove 'flow_control'")
            }
            if transport == .modbusRTU, serial.line.dataBits != 8 {
                source.error(line.optional("data_bits"), "a Modbus RTU line has 8 data bits", hint: "remove 'data_bits'")
            }
            if let node = line.optional("terminator"), let t = source.string(node, "terminator") {
                if t.isEmpty { source.error(node, "an empty terminator would never end a reply", hint: "the device's line end, such as \"\\r\\n\"") }
                else { serial.terminator = t }
            }
            if let node = line.optional("timeout"), let expr = source.expression(node, "timeout") {
                if let seconds = try? ExprEnvironment().quantity(expr).seconds, seconds > 0 {
                    serial.timeoutSeconds = seconds
                } else {
                    source.error(node, "timeout must be a positive duration such as '1 s'")
                }
            }
            line.rejectUnknownKeys()
        }
        var responseTimeout = 1.0
        if let node = top.optional("timeout") {
            if transport == .serial {
                source.error(node, "a serial driver's timeout goes in its serial settings", hint: "serial: { timeout: 1 s }")
            } else if transport == .plugin {
                source.error(node, "a plugin's timeout goes in the lab config or in its describe",
                             hint: "plugin: { command: [...], timeout: 2 s }; docs/plugins.md")
            } else if let seconds = duration(node, "timeout", source: source) {
                responseTimeout = seconds
            }
        }
        var byteTimeout = 0.5
        if let node = top.optional("byte_timeout") {
            if transport != .modbusRTU {
                source.error(node, "byte_timeout is for a modbus-rtu driver")
            } else if let seconds = duration(node, "byte_timeout", source: source) {
                byteTimeout = seconds
            }
        }
        var channels: [String: ChannelSpec] = [:]
        if let node = top.required("channels"), let map = source.mapping(node, "channels") {
            for (channelName, _, value) in map.pairs {
                if let channel = parseChannel(channelName, value, source: source, transport: transport) {
                    channels[channelName] = channel
                }
            }
        }
        var safeState: [(String, Value)] = []
        if let node = top.optional("safe_state"), let map = source.mapping(node, "safe_state") {
            for (channelName, keyNode, value) in map.pairs {
                guard let channel = channels[channelName] else {
                    source.error(keyNode, "safe_state names unknown channel '\(channelName)'",
                                 hint: suggestion(for: channelName, among: channels.keys))
                    continue
                }
                guard channel.writable else {
                    source.error(keyNode, "safe_state channel '\(channelName)' is not writable")
                    continue
                }
                if let v = constantValue(value, for: channel, source: source) { safeState.append((channelName, v)) }
            }
        }
        let watchdog = top.optional("watchdog").flatMap { parseWatchdog($0, source: source, transport: transport) }
        var identity = top.optional("identity").flatMap { parseIdentity($0, source: source, transport: transport) }
        let initSteps = top.optional("init").map { parseInit($0, source: source, transport: transport) } ?? []
        var minInterval = 0.0
        if let node = top.optional("min_interval") {
            if transport == .plugin { source.error(node, "a plugin paces its device itself", hint: "remove 'min_interval:'; docs/plugins.md") }
            else if let seconds = duration(node, "min_interval", source: source) {
                // Every request waits this long, the safe state's too: a long pause would hold a
                // lost run's other instruments off their safe state.
                if seconds > 10 { source.error(node, "min_interval is at most 10 s (a safe state must not wait longer)", hint: "a device this slow is polled, not paced: e.g. 'min_interval: 500 ms'") }
                else { minInterval = seconds }
            }
        }
        let errorReplies = top.optional("errors").flatMap { parseErrorReplies($0, source: source, transport: transport) } ?? .standard
        let scpi = top.optional("scpi").flatMap { source.bool($0, "scpi") } ?? false
        if scpi, transport != .serial { source.error(top.keyNode("scpi"), "scpi is for a serial driver (an ASCII command set)") }
        if scpi, identity == nil { identity = .command("*IDN?") }
        let simulation = top.optional("simulation").flatMap { parseSimulation($0, channels: channels, source: source) }
        top.rejectUnknownKeys()
        guard let name, let transport else { return nil }
        return DriverSpec(name: name, vendor: vendor, transport: transport, channels: channels, safeState: safeState,
                          serial: serial, source: SourceText(path: source.path, text: source.text, sha256: source.sha256),
                          responseTimeout: responseTimeout, byteTimeout: byteTimeout, watchdog: watchdog, identity: identity,
                          simulation: simulation, initSteps: initSteps, minInterval: minInterval, errorReplies: errorReplies, scpi: scpi)
    }

    /// Serial `{ query: "*IDN?" }`, Modbus `{ holding: 900, count: 8 }` (a Modbus read holds at most 125 registers).
    private static func parseIdentity(_ node: Node, source: YAMLSource, transport: Transport?) -> IdentityQuery? {
        guard let map = source.mapping(node, "identity") else { return nil }
        var identity: IdentityQuery?
        if let query = map.optional("query").flatMap({ source.string($0, "query") }) {
            if transport?.isModbus == true { source.error(map.keyNode("query"), "a Modbus driver's identity is read from holding registers", hint: "holding: 900, count: 8") }
            identity = .command(query)
        }
        if let address = map.optional("holding").flatMap({ source.integer($0, "holding", in: 0...65535) }) {
            if transport == .serial { source.error(map.keyNode("holding"), "a serial driver's identity is a query", hint: "query: \"*IDN?\"") }
            let count = map.required("count", hint: "how many registers the text fills, such as 8").flatMap { source.integer($0, "count", in: 1...125) }
            if let count {
                if address + count > 65536 { source.error(map.keyNode("count"), "holding \(address) + \(count) registers runs past register 65535") }
                identity = .holding(address: UInt16(address), count: count)
            }
        }
        map.rejectUnknownKeys()
        if identity == nil, source.diagnostics.isEmpty {
            source.error(node, "identity needs 'query' (serial) or 'holding' and 'count' (Modbus)", hint: "identity: { query: \"*IDN?\" }")
        }
        return identity
    }

    /// A positive duration (or, `allowingZero`, a non-negative one); a bare number is seconds
    /// (`value: 5` for a watchdog reads naturally).
    static func duration(_ node: Node, _ what: String, source: YAMLSource, allowingZero: Bool = false) -> Double? {
        guard let expr = source.expression(node, what) else { return nil }
        let q = try? ExprEnvironment().quantity(expr)
        guard let q, let seconds = q.unit == .one ? q.value : q.seconds, seconds > 0 || (allowingZero && seconds == 0), seconds.isFinite else {
            source.error(node, "\(what) must be a \(allowingZero ? "non-negative" : "positive") duration such as '1 s'")
            return nil
        }
        return seconds
    }

    /// Modbus `{ holding: 200, value: 5 }`, serial `{ command: "WDT {value}", value: 5 }`; `feed_every`
    /// defaults to a third of the value.
    private static func parseWatchdog(_ node: Node, source: YAMLSource, transport: Transport?) -> Watchdog? {
        guard let map = source.mapping(node, "watchdog") else { return nil }
        if transport == .plugin {
            source.error(node, "a plugin keeps its device's watchdog itself", hint: "remove 'watchdog:'; docs/plugins.md")
            return nil
        }
        var target: Watchdog.Target?
        if let a = map.optional("holding").flatMap({ source.integer($0, "holding", in: 0...65535) }) {
            if transport == .serial { source.error(map.keyNode("holding"), "a serial driver's watchdog is a command", hint: "command: \"WDT {value}\"") }
            target = .holding(UInt16(a))
        }
        if let command = map.optional("command").flatMap({ source.string($0, "command") }) {
            if transport?.isModbus == true { source.error(map.keyNode("command"), "a Modbus driver's watchdog is a holding register", hint: "holding: 200") }
            if !command.contains("{value}") { source.error(map.keyNode("command"), "the watchdog command needs {value} where the seconds go") }
            target = .command(command)
        }
        let seconds = map.required("value").flatMap { duration($0, "watchdog value", source: source) }
        let feedEvery = map.optional("feed_every").flatMap { duration($0, "feed_every", source: source) }
        map.rejectUnknownKeys()
        guard let target else {
            source.error(node, "a watchdog needs 'holding' (Modbus) or 'command' (serial)")
            return nil
        }
        guard let seconds else { return nil }
        if let feedEvery, feedEvery >= seconds {
            source.error(map.keyNode("feed_every"), "feed_every must be shorter than the watchdog value (\(seconds) s)")
            return nil
        }
        if case .holding = target, seconds.rounded() != seconds || seconds > 65535 {
            source.error(map.keyNode("value"), "a register watchdog's value is whole seconds up to 65535")
            return nil
        }
        return Watchdog(target: target, seconds: seconds, feedEvery: feedEvery)
    }

    private static func parseChannel(_ name: String, _ node: Node, source: YAMLSource, transport: Transport?) -> ChannelSpec? {
        guard let map = source.mapping(node, "channel '\(name)'") else { return nil }
        var register: ChannelSpec.Register?
        let address = { (key: String) -> UInt16? in
            map.optional(key).flatMap { source.integer($0, key, in: 0...65535) }.map(UInt16.init)
        }
        let given = ["holding", "input", "coil", "discrete"].filter { map.keyNode($0) != nil }
        if given.count > 1 {
            source.error(map.keyNode(given[1]), "channel '\(name)' has both '\(given[0])' and '\(given[1])': a channel is one register",
                         hint: "keep the one the device's manual gives for '\(name)', or make two channels")
        }
        if let a = address("holding") { register = .holding(a) }
        else if let a = address("input") { register = .input(a) }
        else if let a = address("coil") { register = .coil(a) }
        else if let a = address("discrete") { register = .discreteInput(a) }
        // The others are reported above; not again as unknown keys.
        given.dropFirst().forEach { _ = map.optional($0) }
        let query = map.optional("query").flatMap { source.string($0, "query") }
        let write = parseWriteCommand(map, source: source)
        if query != nil || write != nil { register = .command(query: query, write: write) }
        // Each transport has one kind of channel: the other kind would only fail when first used.
        if transport?.isModbus == true, let key = ["query", "write", "on", "off"].first(where: { map.keyNode($0) != nil }) {
            source.error(map.keyNode(key), "a Modbus driver's channel is a register, not a command",
                         hint: "holding, input, coil or discrete, as in 'input: 0'")
        } else if transport == .serial, let key = ["holding", "input", "coil", "discrete"].first(where: { map.keyNode($0) != nil }) {
            source.error(map.keyNode(key), "a serial driver's channel is a command, not a register",
                         hint: "query: \"X?\" to read it, write: \"X {value}\" to set it")
        }
        if transport == .plugin {
            if register != nil { source.error(node, "a plugin channel has no address or command: the plugin is asked for it by name") }
            register = .plugin
        }
        let isBit: Bool
        switch register {
        case .coil?, .discreteInput?: isBit = true
        default: isBit = false
        }
        var type: ChannelSpec.DataType = isBit ? .bool : (transport?.isModbus == true ? .uint16 : .float)
        if let node = map.optional("type"), let text = source.string(node, "type") {
            if let t = ChannelSpec.DataType(rawValue: text) { type = t }
            else { source.error(node, "unknown type '\(text)'", hint: "use bool, int16, uint16, int32, uint32, float32, float64, float, array or string") }
        }
        let textRegisters = parseText(name, map, type: type, transport: transport, source: source)
        let array = parseArrayLayout(name, map, type: type, source: source)
        if let parse = map.optional("parse"), let text = source.string(parse, "parse"), text != "float" {
            source.error(parse, "unknown parse '\(text)'", hint: "only 'float' is supported so far")
        }
        var wordOrder = WordOrder.abcd
        if let node = map.optional("word_order"), let text = source.string(node, "word_order") {
            if let order = WordOrder(rawValue: text) { wordOrder = order }
            else { source.error(node, "unknown word_order '\(text)'", hint: "use ABCD, CDAB, BADC or DCBA") }
        }
        let unit = map.optional("unit").flatMap { source.unit($0, "unit") } ?? .one
        var access = "r"
        if case .command(let q, let w)? = register { access = (q != nil ? "r" : "") + (w != nil ? "w" : "") }
        if let node = map.optional("access"), let text = source.string(node, "access") {
            if ["r", "w", "rw"].contains(text) { access = text }
            else { source.error(node, "unknown access '\(text)'", hint: "use r, w or rw") }
        }
        let limits = map.optional("limits").flatMap { source.range($0, "limits") }
        // Register reads are safe to repeat; a serial query may not be (some devices act on one).
        let defaultRetries = transport?.isModbus == true ? 1 : 0
        let retries = map.optional("retries").flatMap { source.integer($0, "retries", in: 0...10) } ?? defaultRetries
        var scale = 1.0, offset = 0.0
        if let node = map.optional("scale"), let x = source.number(node, "scale") {
            if x != 0, x.isFinite { scale = x } else { source.error(node, "scale must be a finite number other than 0") }
        }
        if let node = map.optional("offset"), let x = source.number(node, "offset") {
            if x.isFinite { offset = x } else { source.error(node, "offset must be a finite number") }
        }
        let maxRate = map.optional("max_rate").flatMap { maximumRate($0, unit: unit, source: source) }
        let readBack = readBackTolerance(map, unit: unit, source: source)
        // A misspelt key (`inptu: 1`) is the likelier story than a missing address: say that first.
        let hadUnknownKeys = map.rejectUnknownKeys()
        guard let register else {
            if !hadUnknownKeys {
                source.error(node, "channel '\(name)' needs an address (holding, input, coil, discrete) or a command (query, write, on/off)")
            }
            return nil
        }
        if case .command(_, .template(let template)?) = register, !template.contains("{value}") {
            source.error(map.optional("write"), "write command '\(template)' sends the same text whatever the value",
                         hint: type == .bool ? "give one command per value: on: \"\(template)\" and off: \"...\", or put {value} in it (sent as 1 or 0)"
                                             : "put {value} where the number goes, as in \"\(template) {value}\"")
        }
        let numericRegister: Bool = switch register {
        case .holding, .input: type != .bool
        default: false
        }
        if scale != 1 || offset != 0, !numericRegister {
            source.error(map.keyNode("scale") ?? map.keyNode("offset"), "scale and offset are for a numeric register (holding or input)")
        }
        if maxRate != nil, !access.contains("w") || type == .bool {
            source.error(map.keyNode("max_rate"), "max_rate is for a writable numeric channel; '\(name)' is \(type == .bool ? "on/off" : "read-only")")
        }
        if readBack != nil {
            switch register {
            case .command(_?, .template?): break
            case .holding: source.error(map.keyNode("read_back"), "a holding register is always read back after a write; remove read_back")
            default: source.error(map.keyNode("read_back"), "read_back needs a channel with both 'query' and 'write'")
            }
        }
        if case .command(_, .switched?) = register, type != .bool {
            source.error(map.keyNode("on") ?? map.keyNode("off"), "on/off commands are for a bool channel; '\(name)' is \(type.rawValue)",
                         hint: "add 'type: bool', or use write: \"... {value}\"")
        }
        if type == .array {
            var queryOnly = false
            if case .command(_?, nil) = register { queryOnly = true }
            if transport?.isModbus == true || !queryOnly {
                source.error(map.keyNode("type"), "an array channel is read-only and serial: a 'query' answered by comma-separated numbers",
                             hint: transport?.isModbus == true ? "a Modbus driver reads numbers one register pair at a time" : "remove 'write' (or on/off)")
            }
            if queryOnly, access.contains("w") { source.error(map.keyNode("access"), "an array channel cannot be written") }
            // max_rate and read_back are refused above already: they need a write.
            if map.keyNode("limits") != nil {
                source.error(map.keyNode("limits"), "limits is for a numeric channel; '\(name)' is an array")
            }
        }
        let channel = ChannelSpec(name: name, register: register, type: type, wordOrder: wordOrder, unit: unit,
                                  writable: access.contains("w"), readable: access.contains("r"), limits: limits,
                                  maxRate: maxRate, readBackTolerance: readBack, location: source.location(node), retries: retries,
                                  array: array, scale: scale, offset: offset, textRegisters: textRegisters)
        switch register {
        case .holding(let first), .input(let first):
            let width = switch type {
            case .string: textRegisters
            case .int32, .uint32, .float32: 2
            case .float64: 4
            default: 1
            }
            if Int(first) + width > 65536 {
                source.error(map.keyNode("holding") ?? map.keyNode("input"), "'\(name)' at register \(first) takes \(width) registers and runs past register 65535",
                             hint: "give the channel's real address or type")
            }
            if case .input = register, access.contains("w") {
                source.error(map.keyNode("access"), "'\(name)' is an input register, which a device never lets anyone write",
                             hint: "use 'access: r', or 'holding:' if the device takes writes there")
            }
        case .discreteInput where access.contains("w"):
            source.error(map.keyNode("access"), "'\(name)' is a discrete input, which a device never lets anyone write",
                         hint: "use 'access: r', or 'coil:' if the device takes writes there")
        default: break
        }
        // Limits a register cannot reach would let a driver file promise a range the guard then
        // refuses on every write past it (and a safe state there could never be commanded).
        if let limits, let held = channel.registerRange {
            for bound in [limits.lowerBound, limits.upperBound] where !held.contains(channel.raw(bound).rounded()) {
                source.error(map.keyNode("limits"), "the limit \(bound)\(unit.afterNumber) of '\(name)' does not fit its \(type.rawValue) register "
                             + "(\(Int(held.lowerBound))…\(Int(held.upperBound)) counts; \(bound)\(unit.afterNumber) is \(channel.raw(bound)) counts)",
                             hint: "narrow the limits, or give the register's real type or scale")
                break
            }
        }
        return channel
    }

    /// `type: string`: Modbus `{ holding: 10, type: string, count: 8 }` (two characters a
    /// register), serial `{ query: "SN?", type: string }` (the reply line). Read-only.
    private static func parseText(_ name: String, _ map: MappingReader, type: ChannelSpec.DataType, transport: Transport?,
                                  source: YAMLSource) -> Int {
        guard type == .string else {
            if map.optional("count") != nil { source.error(map.keyNode("count"), "count is for a string channel", hint: "add 'type: string'") }
            return 0
        }
        let readOnly = "a string channel is read-only: its text is recorded with each run"
        for key in ["write", "on", "off", "limits", "max_rate", "read_back", "scale", "offset", "coil", "discrete"] where map.keyNode(key) != nil {
            source.error(map.keyNode(key), key == "coil" || key == "discrete" ? "a string is kept in holding or input registers" : "\(readOnly); remove '\(key)'")
        }
        if let node = map.optional("access"), let text = source.string(node, "access"), text != "r" { source.error(node, readOnly) }
        if transport == .plugin { source.error(map.keyNode("type"), "a plugin channel is a number or a bool") }
        guard transport?.isModbus == true else {
            if map.optional("count") != nil { source.error(map.keyNode("count"), "a serial string channel is the whole reply line; remove count") }
            return 0
        }
        guard let node = map.required("count", hint: "how many registers the text fills, two characters each, such as 'count: 8'") else { return 0 }
        return source.integer(node, "count", in: 1...125) ?? 0
    }

    /// `length: 1024` and `axis: { name: wavelength, unit: nm, start: 200, step: 0.5 }` (or the
    /// axis' `values: [...]`, one per element) of a `type: array` channel. Without an axis, the
    /// positions are the element indices.
    private static func parseArrayLayout(_ name: String, _ map: MappingReader, type: ChannelSpec.DataType,
                                         source: YAMLSource) -> ArrayLayout? {
        let lengthNode = map.optional("length"), axisNode = map.optional("axis")
        guard type == .array else {
            if let key = ["length", "axis"].first(where: { map.keyNode($0) != nil }) {
                source.error(map.keyNode(key), "\(key) is for an array channel", hint: "add 'type: array'")
            }
            return nil
        }
        guard let lengthNode else {
            source.error(map.keyNode("type"), "array channel '\(name)' needs a length", hint: "e.g. 'length: 1024'")
            return nil
        }
        guard let length = source.integer(lengthNode, "length", in: 1...ArrayLayout.maximumLength) else { return nil }
        guard let axisNode else { return ArrayLayout(length: length, axis: ArrayAxis(name: "index", unit: "", start: 0, step: 1)) }
        guard let axis = source.mapping(axisNode, "axis") else { return nil }
        let axisName = axis.required("name").flatMap { source.string($0, "axis name") }
        let unit = axis.required("unit").flatMap { source.unit($0, "axis unit") }
        let start = axis.optional("start").flatMap { source.number($0, "axis start") }
        let step = axis.optional("step").flatMap { source.number($0, "axis step") }
        var positions: [Double]?
        if let node = axis.optional("values") {
            if let items = node.sequence {
                let numbers = items.compactMap { source.number($0, "axis value") }
                if numbers.count == items.count { positions = numbers }
                if items.count != length {
                    source.error(node, "the axis has \(items.count) values for \(length) elements", hint: "give one value per element, or start and step")
                }
            } else {
                source.error(node, "axis values must be a list [x0, x1, ...]")
            }
        }
        let hasGrid = axis.keyNode("start") != nil || axis.keyNode("step") != nil
        axis.rejectUnknownKeys()
        if hasGrid == (axis.keyNode("values") != nil) {
            source.error(axisNode, "an axis has either start and step, or values", hint: "e.g. '{ name: wavelength, unit: nm, start: 200, step: 0.5 }'")
            return nil
        }
        if hasGrid, start == nil || step == nil {
            if axis.keyNode(start == nil ? "start" : "step") == nil {
                source.error(axisNode, "the axis needs both start and step")
            }
            return nil
        }
        if let step, step == 0 { source.error(axis.keyNode("step"), "the axis step must not be 0"); return nil }
        guard let axisName, let unit else { return nil }
        if let positions { return ArrayLayout(length: length, axis: ArrayAxis(name: axisName, unit: unit.symbol, values: positions)) }
        guard let start, let step else { return nil }
        return ArrayLayout(length: length, axis: ArrayAxis(name: axisName, unit: unit.symbol, start: start, step: step))
    }

    /// `max_rate: 10 degC/min` on a channel in degC: a positive quantity in the channel's unit per
    /// a time, returned per second.
    private static func maximumRate(_ node: Node, unit: LabUnit, source: YAMLSource) -> Double? {
        let example = "e.g. 'max_rate: 10 \(unit.symbol)/min'"
        guard let expr = source.expression(node, "max_rate") else { return nil }
        guard let q = try? ExprEnvironment().quantity(expr), q.unit != .one else {
            source.error(node, "max_rate must be a rate in the channel's unit per time", hint: example)
            return nil
        }
        let perSecond = LabUnit("\(unit.symbol)/s", unit.dimension / .time, scale: unit.scale)
        guard let rate = try? q.convertedDifference(to: perSecond).value else {
            source.error(node, "max_rate '\(expr)' is not a rate of \(unit.symbol) (a \(unit.dimension)) per time", hint: example)
            return nil
        }
        guard rate > 0, rate.isFinite else {
            source.error(node, "max_rate must be positive and finite", hint: example)
            return nil
        }
        return rate
    }

    /// `read_back: true`, optionally with `read_back_tolerance: 0.01 mL/min`.
    private static func readBackTolerance(_ map: MappingReader, unit: LabUnit, source: YAMLSource) -> Double? {
        let wanted = map.optional("read_back").flatMap { source.bool($0, "read_back") } ?? false
        guard let node = map.optional("read_back_tolerance") else { return wanted ? 0 : nil }
        if !wanted { source.error(node, "read_back_tolerance without read_back: true", hint: "add 'read_back: true'") }
        guard let expr = source.expression(node, "read_back_tolerance") else { return nil }
        guard var q = try? ExprEnvironment().quantity(expr) else {
            source.error(node, "read_back_tolerance must be a number")
            return nil
        }
        if q.unit == .one { q.unit = unit }
        guard let tolerance = try? q.convertedDifference(to: unit).value, tolerance >= 0, tolerance.isFinite else {
            source.error(node, "read_back_tolerance must be a non-negative difference in \(unit.symbol)")
            return nil
        }
        return tolerance
    }

    /// `write: "WL {value}"`, or for a boolean `on: "RUN"` with `off: "STOP"`; one form, not both.
    private static func parseWriteCommand(_ map: MappingReader, source: YAMLSource) -> ChannelSpec.WriteCommand? {
        let write = map.optional("write").flatMap { source.string($0, "write") }
        let on = map.optional("on").flatMap { source.string($0, "on") }
        let off = map.optional("off").flatMap { source.string($0, "off") }
        switch (write, on, off) {
        case (nil, nil, nil):
            return nil
        case (let template?, nil, nil):
            return .template(template)
        case (nil, let on?, let off?):
            return .switched(on: on, off: off)
        case (_?, _, _):
            source.error(map.keyNode("on") ?? map.keyNode("off"), "a channel has either 'write' or 'on'/'off', not both")
        case (nil, _, _):
            source.error(map.keyNode("on") ?? map.keyNode("off"), "'on' and 'off' go together",
                         hint: "give the command for true as 'on' and the one for false as 'off'")
        }
        return nil
    }

    /// A constant in a driver file (`25 degC`, `false`) converted to the channel's unit.
    static func constantValue(_ node: Node, for channel: ChannelSpec, source: YAMLSource) -> Value? {
        if channel.type == .bool { return source.bool(node, "value for '\(channel.name)'").map(Value.bool) }
        guard let expr = source.expression(node, "value for '\(channel.name)'") else { return nil }
        do {
            var q = try ExprEnvironment().quantity(expr)
            if q.unit == .one { q.unit = channel.unit }
            let value = try q.converted(to: channel.unit).value
            if let limits = channel.limits, !limits.contains(value) {
                source.error(node, "\(value)\(channel.unit.afterNumber) is outside the limits \(limits) of '\(channel.name)'")
                return nil
            }
            if let held = channel.registerRange, !held.contains(channel.raw(value).rounded()) {
                source.error(node, "\(value) \(channel.unit) does not fit the \(channel.type.rawValue) register of '\(channel.name)' "
                             + "(\(Int(held.lowerBound))…\(Int(held.upperBound)) counts)", hint: "a safe state must be a value the device can hold")
                return nil
            }
            return .real(value)
        } catch {
            source.error(node, error.message)
            return nil
        }
    }
}

/// Reads a user's file as UTF-8, with an error that names the file. Only regular files under the
/// size cap are read: `include: /dev/zero` must be an error, not a hang.
func readUserFile(_ path: String) throws -> String {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    guard let attributes else { throw LabError(.invalidFile, "cannot read \(path)") }
    guard attributes[.type] as? FileAttributeType == .typeRegular else {
        throw LabError(.invalidFile, "\(path) is not a regular file")
    }
    guard let size = attributes[.size] as? Int, size <= YAMLSource.maximumBytes else {
        throw LabError(.invalidFile, "\(path) is larger than \(YAMLSource.maximumBytes >> 20) MiB")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw LabError(.invalidFile, "cannot read \(path)")
    }
    guard let text = String(data: data.prefix(YAMLSource.maximumBytes), encoding: .utf8) else {
        throw LabError(.invalidFile, "\(path) is not valid UTF-8")
    }
    return text
}
