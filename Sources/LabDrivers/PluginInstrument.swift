public import LabCore
public import LabSpec
public import LabTransport
public import Logging

/// An instrument served by an out-of-process plugin (docs/plugins.md). The lab's driver file (with
/// `transport: plugin`) gives the channels, limits and safe state, so protocols validate without
/// starting anything; the plugin's `describe` must agree with it. Every write passes this
/// instrument's `WriteGuard` before anything is sent: a value outside the driver file's limits, NaN,
/// or a move faster than `max_rate` never reaches the plugin.
public struct PluginInstrument: DriverBackedInstrument {
    public let identity: InstrumentIdentity
    public let spec: DriverSpec
    public let link: PluginLink
    private let writeGuard: WriteGuard

    public init(name: String, spec: DriverSpec, command: LabConfig.PluginCommand, clock: any LabClock = ScaledClock(),
                logger: Logger? = nil, configure: (inout PluginLink.Settings) -> Void = { _ in }) {
        self.spec = spec
        writeGuard = WriteGuard(instrument: name, clock: clock)
        identity = Self.identity(name: name, spec: spec, address: "plugin: " + command.command.joined(separator: " "))
        var settings = PluginLink.Settings(command: command.command, directory: command.directory, timeout: command.timeout)
        settings.options = command.options.mapValues { .string($0) }
        configure(&settings)
        let logger = logger ?? Logger(label: "serendip.plugin")
        link = PluginLink(name: name, settings: settings,
                          stderr: { logger.info("plugin stderr", metadata: ["instrument": "\(name)", "line": "\($0)"]) },
                          validate: { [spec] description throws(LabError) in try Self.agree(description, with: spec, name: name) })
    }

    public func read(_ name: String) async throws -> Value {
        guard let channel = spec.channel(name), channel.readable else {
            throw LabError(.accessDenied, "\(identity.name).\(name) cannot be read")
        }
        let result = try await link.request("read", ["channel": .string(name)])
        switch (channel.type, result["value"]) {
        case (.bool, .bool(let b)?): return .bool(b)
        case (.bool, _): break
        case (_, .number(let x)?) where x.isFinite: return .real(x)
        default: break
        }
        throw LabError(.protocolViolation, "\(identity.name).\(name): plugin answered read with \(result.json), not {\"value\": \(channel.type == .bool ? "true or false" : "a number")}")
    }

    public func write(_ name: String, _ value: Value, rateLimited: Bool) async throws {
        guard let channel = spec.channel(name) else { throw LabError(.unknownReference, "\(identity.name) has no channel '\(name)'") }
        let checked = try await writeGuard.check(value, for: channel, rateLimited: rateLimited) { try await read(name) }
        let wire: PluginValue = switch checked { case .bool(let b): .bool(b); case .real(let x): .number(x) }
        _ = try await link.request("write", ["channel": .string(name), "value": wire])
        writeGuard.wrote(checked, to: channel)
    }

    /// The driver file's safe state, channel by channel through the write guard, then `safe_state`
    /// so the plugin can do what channels cannot say (close a door, park an arm).
    public func goToSafeState() async throws {
        var failures: [String] = []
        for (channel, value) in spec.safeState {
            do { try await write(channel, value, rateLimited: false) } catch { failures.append("\(channel): \(error)") }
        }
        do { _ = try await link.request("safe_state") } catch { failures.append("safe_state: \(error)") }
        guard failures.isEmpty else {
            throw LabError(.transport, "\(identity.name) not fully in its safe state: " + failures.joined(separator: "; "))
        }
    }

    /// Starts the plugin if it is not running (or is due a restart) and reads its first readable channel.
    public func probe() async throws {
        if let channel = spec.channels.values.filter(\.readable).min(by: { $0.name < $1.name }) {
            _ = try await read(channel.name)
        } else {
            _ = try await link.request("identity")
        }
    }

    /// What the plugin says the device is (vendor, model, serial number, firmware), for provenance.
    public func deviceIdentity() async throws -> PluginValue { try await link.request("identity") }

    /// The plugin's `describe` is a driver file in JSON (with `timeout` in seconds); every channel of the lab's driver file must be
    /// in it with the same unit, type and access. Returns the request timeout it declares.
    static func agree(_ description: PluginValue, with spec: DriverSpec, name: String) throws(LabError) -> Double? {
        guard case .object(var fields) = description else {
            throw LabError(.protocolViolation, "\(name): plugin's describe result is not an object")
        }
        var timeout: Double?
        switch fields.removeValue(forKey: "timeout") {
        case nil: break
        case .number(let seconds)? where seconds > 0 && seconds.isFinite: timeout = seconds
        case let other?: throw LabError(.protocolViolation, "\(name): plugin's describe gives timeout \(other.json), not a number of seconds")
        }
        fields["transport"] = .string("plugin")
        if fields["driver"] == nil { fields["driver"] = .string(spec.name) }
        let described: DriverSpec
        do {
            described = try DriverSpec.parse(PluginValue.object(fields).json, path: "\(name) (plugin describe)")
        } catch {
            throw LabError(.protocolViolation, "\(name): plugin's describe is not a valid driver description: \(error)")
        }
        var problems: [String] = []
        for channel in spec.channels.values.sorted(by: { $0.name < $1.name }) {
            guard let other = described.channel(channel.name) else { problems.append("no channel '\(channel.name)'"); continue }
            if other.unit.symbol != channel.unit.symbol { problems.append("'\(channel.name)' in \(other.unit.symbol), not \(channel.unit.symbol)") }
            if (other.type == .bool) != (channel.type == .bool) { problems.append("'\(channel.name)' is \(other.type.rawValue), not \(channel.type.rawValue)") }
            if other.readable != channel.readable || other.writable != channel.writable {
                problems.append("'\(channel.name)' has other access than the driver file says")
            }
        }
        guard problems.isEmpty else {
            throw LabError(.protocolViolation, "\(name): plugin does not match driver '\(spec.name)': " + problems.joined(separator: "; "))
        }
        return timeout
    }
}
