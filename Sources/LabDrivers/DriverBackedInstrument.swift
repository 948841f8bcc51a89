public import LabCore
public import LabSpec

/// An instrument whose behaviour comes from a driver file: channel metadata and the safe state are
/// the file's, whatever the transport.
public protocol DriverBackedInstrument: Instrument {
    var spec: DriverSpec { get }
    /// Checks that the device answers, opening its connection again if it was lost; throws
    /// `.instrumentLost` or `.timeout` if it does not. Reads one channel (a serial device with a
    /// watchdog is fed instead: a query may have side effects, a feed has a known one).
    func probe() async throws
    /// Writes the driver file's watchdog timeout: the first write arms the device's watchdog, each
    /// later one feeds it. Does nothing for a driver without a watchdog.
    func feedWatchdog() async throws
    /// Writes through the instrument's `WriteGuard`; `rateLimited` is false only for the safe state.
    func write(_ channel: String, _ value: Value, rateLimited: Bool) async throws
}

extension DriverBackedInstrument {
    public func probe() async throws {}
    public func feedWatchdog() async throws {}

    public func write(_ channel: String, _ value: Value) async throws {
        try await write(channel, value, rateLimited: true)
    }

    public func channelInfo(_ channel: String) -> ChannelInfo? { spec.channel(channel)?.info }

    /// Writes every channel of the safe state, each attempted even when an earlier one failed.
    /// Exempt from `max_rate` (the safe state must be reached now), not from limits or NaN.
    public func goToSafeState() async throws { try await goToSafeState(leaving: []) }

    /// The safe state but for the channels `left` (ones whose encoding is in doubt).
    public func goToSafeState(leaving left: Set<String>) async throws {
        var failures: [String] = []
        for (channel, value) in spec.safeState where !left.contains(channel) {
            do { try await write(channel, value, rateLimited: false) } catch { failures.append("\(channel): \(error)") }
        }
        guard failures.isEmpty else {
            throw LabError(.transport, "\(identity.name) not fully in its safe state: " + failures.joined(separator: "; "))
        }
    }

    static func identity(name: String, spec: DriverSpec, address: String) -> InstrumentIdentity {
        InstrumentIdentity(name: name, driver: spec.name, driverSHA256: spec.source.sha256, address: address,
                           deviceQuery: spec.identity?.description)
    }
}
