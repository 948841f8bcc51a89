public import LabCore
public import LabSpec
import Synchronization

/// A simulated instrument with no transport at all: its device model answers in the same process,
/// in no time. For run-time estimates and for measuring the engine's own overhead; the simulators of
/// `SimulatedLab` remain the ones that exercise the real transports. Writable channels hold what was
/// last written (before any write, what the model reports); read-only channels ask the model. Every
/// write passes the same `WriteGuard` as on a real instrument, and the safe state is the driver file's.
public final class InProcessInstrument: DriverBackedInstrument, ArrayReadable, TextReadable {
    public let identity: InstrumentIdentity
    public let spec: DriverSpec
    private let model: any DeviceModel
    private let held = Mutex<[String: Value]>([:])
    private let writeGuard: WriteGuard

    public init(name: String, spec: DriverSpec, model: any DeviceModel, clock: any LabClock = ScaledClock()) {
        self.spec = spec
        self.model = model
        writeGuard = WriteGuard(instrument: name, clock: clock)
        identity = Self.identity(name: name, spec: spec, address: "in-process")
    }

    /// Answers as the simulators do.
    public func identifyDevice() async throws -> InstrumentIdentity {
        var identified = identity
        if spec.identity != nil { identified.deviceAnswer = SimulatedIdentity.answer(for: spec) }
        return identified
    }

    public var textChannels: [String] { spec.channels.values.filter(\.isText).map(\.name).sorted() }

    /// Answers as the simulators do.
    public func readText(_ name: String) async throws -> String {
        guard let channel = spec.channel(name), channel.isText else { throw LabError(.accessDenied, "\(identity.name).\(name) is not a string channel") }
        return SimulatedIdentity.text(of: channel)
    }

    public func read(_ name: String) async throws -> Value {
        let channel = try lookup(name)
        guard channel.readable else { throw LabError(.accessDenied, "\(identity.name).\(name) cannot be read") }
        if channel.isText { throw LabError(.accessDenied, "\(identity.name).\(name) is a string channel: its text is recorded with each run") }
        if channel.writable, let value = held.withLock({ $0[name] }) { return value }
        let x = try model.value(of: name)
        return channel.type == .bool ? .bool(x != 0) : .real(x)
    }

    public func readArray(_ name: String) async throws -> [Double] {
        let channel = try lookup(name)
        guard let layout = channel.array else { throw LabError(.accessDenied, "\(identity.name).\(name) is not an array channel") }
        return try model.values(of: name, along: layout.positions)
    }

    public func write(_ name: String, _ value: Value, rateLimited: Bool) async throws {
        let channel = try lookup(name)
        let checked = try await writeGuard.check(value, for: channel, rateLimited: rateLimited) { try await read(name) }
        model.didWrite(name, checked.asDouble)
        held.withLock { $0[name] = checked }
        writeGuard.wrote(checked, to: channel)
    }

    private func lookup(_ name: String) throws(LabError) -> ChannelSpec {
        guard let channel = spec.channel(name) else { throw LabError(.unknownReference, "\(identity.name) has no channel '\(name)'") }
        return channel
    }
}

extension InstrumentConnector {
    /// In-process instruments for every instrument of the lab, whatever its connection, over one
    /// fresh toy chemistry and bench driven by `clock`.
    public static func inProcess(_ config: LabConfig, clock: any LabClock) -> [String: any Instrument] {
        let models = SimulatedLab.models(for: config, clock: clock)
        var instruments: [String: any Instrument] = [:]
        for (name, binding) in config.instruments {
            instruments[name] = InProcessInstrument(name: name, spec: binding.driver, model: models[name] ?? InertModel(), clock: clock)
        }
        return instruments
    }
}
